"""An operator's secrets in the tree never travel in the collection tarball."""
import pathlib
import secrets
import shutil
import subprocess
import tarfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Where the README and the example inventories tell operators to put secrets,
# and the names a vault file usually gets.
SECRET_FILES = [
    "inventories/local/group_vars/all/secrets.yml",
    "inventories/example/group_vars/all/vault.yml",
    "inventories/example/group_vars/letta/secrets.yml",
    "inventories/example/host_vars/db1/vault.yml",
    "inventories/scaled/group_vars/all/secrets.yaml",
]


def test_secret_files_are_left_out_of_the_tarball(tmp_path):
    tree = tmp_path / "tree"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, tracked):
        src = ROOT / name.decode()
        if src.is_file():
            (tree / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name.decode())
    marker = "leak-marker-" + secrets.token_hex(16)
    for rel in SECRET_FILES:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(f"postgresql_db_password: {marker}\n")

    out = tmp_path / "out"
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", str(out), str(tree)],
                   check=True, capture_output=True, text=True)
    (tarball,) = out.glob("*.tar.gz")
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        leaked = [m.name for m in members if m.isfile() and marker.encode() in archive.extractfile(m).read()]
    assert leaked == [], leaked
    assert [n for n in names if n.endswith(("secrets.yml", "secrets.yaml", "vault.yml"))] == [], names
    # The examples that tell operators what to write do travel.
    assert "inventories/local/group_vars/all/secrets.yml.example" in names
