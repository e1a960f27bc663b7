"""Letta's own Python client (letta-client, in the Letta venv) inside a box.

Reads {"base_url", "password", "action", ...} on stdin: `create` makes an agent
from roles/letta/files/offline-agent.json's fields (given as "agent") and
prints its id; `read` prints the name of agent "agent_id".
"""
import json
import sys

from letta_client import Letta

spec = json.load(sys.stdin)
client = Letta(base_url=spec["base_url"], api_key=spec["password"], max_retries=0)
if spec["action"] == "create":
    agent = client.agents.create(name=spec["name"], **spec["agent"])
    print(json.dumps({"id": agent.id, "name": agent.name}))
else:
    agent = client.agents.retrieve(spec["agent_id"])
    print(json.dumps({"id": agent.id, "name": agent.name}))
