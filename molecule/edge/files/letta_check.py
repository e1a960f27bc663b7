"""letta-client (the Letta venv's own) against https://<letta domain>, run in the stack box.

Reads a JSON document on stdin (url, password, cafile, agent) and prints one:
with the password, an agent created and its messages read back, then
deleted; without it, the status the server answered. The client trusts only
the CA file given.
"""
import json
import ssl
import sys
import uuid

import httpx
from letta_client import APIStatusError, Letta


def client(given, password):
    tls = ssl.create_default_context(cafile=given["cafile"])
    return Letta(base_url=given["url"], api_key=password, http_client=httpx.Client(verify=tls), max_retries=0)


def main():
    given = json.load(sys.stdin)
    report = {}
    letta = client(given, given["password"])
    agent = letta.agents.create(name="edge-" + uuid.uuid4().hex[:8], **given["agent"])
    messages = list(letta.agents.messages.list(agent_id=agent.id))
    report["agent_id"] = agent.id
    report["messages"] = len(messages)
    letta.agents.delete(agent_id=agent.id)
    try:
        list(client(given, "not-the-password").agents.list())
        report["wrong_password_status"] = 200
    except APIStatusError as refused:
        report["wrong_password_status"] = refused.status_code
    no_header = httpx.get(given["url"] + "/v1/agents/", verify=ssl.create_default_context(cafile=given["cafile"]))
    report["no_password_status"] = no_header.status_code
    print(json.dumps(report))


if __name__ == "__main__":
    main()
