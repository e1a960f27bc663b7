"""The monitoring host as the tests ask it: Prometheus's and Alertmanager's APIs with the scenario's basic auth, and
the webhook receiver that Alertmanager notifies (the scenario's monitoring_webhook_url, on the runner)."""
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

from stacktest import VARS, http


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Monitor:
    """Prometheus and Alertmanager of one monitoring host."""

    def __init__(self, address, prometheus_port, alertmanager_port):
        self.prometheus = f"http://{address}:{prometheus_port}"
        self.alertmanager = f"http://{address}:{alertmanager_port}"
        self.auth = basic(VARS.get("monitoring_web_username", "admin"), VARS["monitoring_web_password"])

    def get(self, url):
        return http("GET", url, headers=self.auth)

    def query(self, expression):
        status, body = self.get(f"{self.prometheus}/api/v1/query?query={quote(expression, safe='')}")
        assert status == 200, body
        return body["data"]["result"]

    def active_targets(self):
        status, body = self.get(f"{self.prometheus}/api/v1/targets?state=active")
        assert status == 200, body
        return body["data"]["activeTargets"]

    def alerts(self):
        """(alertname, host) of what Alertmanager holds now."""
        status, body = self.get(f"{self.alertmanager}/api/v2/alerts")
        assert status == 200, body
        return [(alert["labels"].get("alertname"), alert["labels"].get("host")) for alert in body]

    def silences(self):
        status, body = self.get(f"{self.alertmanager}/api/v2/silences")
        assert status == 200, body
        return body


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append({"authorization": self.headers.get("Authorization"), "body": body,
                                     "at": time.monotonic()})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Webhook:
    """Alertmanager's webhook receiver: each notification's JSON body, the Authorization header it came with and
    when it arrived (time.monotonic())."""

    def __init__(self):
        hook = urlsplit(VARS["monitoring_webhook_url"])
        self.server = ThreadingHTTPServer((hook.hostname, hook.port), _Handler)
        self.server.received = []
        self.received = self.server.received
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def notified(self, alertname, host, status, since):
        return [alert for message in self.received if message["at"] >= since
                for alert in message["body"]["alerts"]
                if alert["labels"].get("alertname") == alertname and alert["labels"].get("host") == host
                and alert["status"] == status]

    def wait(self, monitor, expected, status, since, seconds):
        """Every (alertname, host) of `expected` notified with `status` after `since`."""
        deadline = time.monotonic() + seconds
        missing = list(expected)
        while time.monotonic() < deadline:
            missing = [item for item in expected if not self.notified(*item, status, since)]
            if not missing:
                return
            time.sleep(2)
        raise AssertionError(f"not notified {status} within {seconds} s: {missing}; "
                             f"Alertmanager holds {monitor.alerts()}")
