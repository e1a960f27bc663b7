# shellcheck shell=sh
# What a converged host already has, read in one remote call so that the
# tasks after it run only where something differs. Prints tab-separated
# "name<TAB>value" lines; nothing is printed for what is missing.
#   $1 the requested version's binary   $2 the sha256 recorded beside it
#   $3 the active-version link           $4 the sysctl.d file
#   $5 the /proc/sys file whose writability decides whether values are set
#   then the sysctl keys, "--", then the paths whose owner, group, mode and
#   sha1 (regular files only) the tasks compare with what they would write.
binary=$1 record=$2 link=$3 sysctl_file=$4 proc_probe=$5
shift 5
tab=$(printf '\t')
if [ -e "$binary" ] || [ -L "$binary" ]; then
  echo "binary${tab}present"
fi
if [ -f "$binary" ]; then
  echo "binary_sha256${tab}$(sha256sum <"$binary" | cut -d' ' -f1)"
fi
if [ -f "$record" ]; then
  echo "recorded_sha256${tab}$(tr -d '[:space:]' <"$record")"
fi
if [ -L "$link" ]; then
  echo "current${tab}$(readlink "$link")"
  echo "current_owner${tab}$(stat -c '%U:%G' "$link")"
fi
if [ -w "$proc_probe" ]; then
  echo "sysctl_writable${tab}true"
fi
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  proc=/proc/sys/$(printf '%s' "$1" | tr './' '/.')
  if [ -r "$proc" ]; then
    echo "sysctl_live $1${tab}$(tr -s '[:space:]' ' ' <"$proc" | sed 's/ $//')"
  fi
  shift
done
[ $# -gt 0 ] && shift
if [ -f "$sysctl_file" ]; then
  # Numbered, so that every line survives as its own name.
  grep -n '' "$sysctl_file" | sed "s/^\([0-9]*\):/sysctl_line \1${tab}/"
fi
for path in "$@"; do
  if [ -L "$path" ]; then
    kind='link'
  elif [ -d "$path" ]; then
    kind='directory'
  elif [ -f "$path" ]; then
    kind='file'
    echo "sha1 $path${tab}$(sha1sum <"$path" | cut -d' ' -f1)"
  elif [ -e "$path" ]; then
    kind='other'
  else
    continue
  fi
  echo "attrs $path${tab}$kind $(stat -c '%U:%G:%a' "$path")"
done
