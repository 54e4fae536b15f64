"""Test-only bridge: lets the current AWS SDK for Rust talk CloudWatch to moto.

aws-sdk-cloudwatch (1.100 and later) speaks only Smithy RPC v2 CBOR; moto understands CloudWatch's awsJson 1.0.
This server takes `POST /service/GraniteServiceVersion20100801/operation/<Op>` with a CBOR body, forwards it to moto
as JSON (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`), and re-encodes moto's answer as CBOR, with timestamps
as CBOR tag 1. Usage: python cloudwatch_cbor_bridge.py MOTO_URL; it prints `Bridging on http://127.0.0.1:PORT`.

moto cannot compute percentiles, so the bridge also keeps every PutMetricData request it forwarded (as JSON):
`GET /captured?namespace=NS` returns them, for tests to check the published Values/Counts themselves.
"""

import base64
import datetime
import gzip
import json
import sys
import urllib.error
import urllib.request
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cbor2

TARGET_PREFIX = "GraniteServiceVersion20100801"
PATH_PREFIX = f"/service/{TARGET_PREFIX}/operation/"


def to_json(value):
    """CBOR-decoded request values to awsJson: datetimes as epoch seconds, bytes as base64."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, cbor2.CBORTag) and value.tag == 1:
        return float(value.value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


def is_timestamp_key(key):
    return key.endswith("Timestamp") or key in ("Timestamps", "StartDate", "EndDate")


def to_epoch(value):
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return value


def to_cbor(value, key=""):
    """awsJson response values to CBOR-ready values, with timestamps as tag 1."""
    if isinstance(value, dict):
        return {k: to_cbor(v, k) for k, v in value.items()}
    if isinstance(value, list):
        if is_timestamp_key(key):
            return [cbor2.CBORTag(1, to_epoch(v)) for v in value]
        return [to_cbor(v, key) for v in value]
    if is_timestamp_key(key) and value is not None:
        return cbor2.CBORTag(1, to_epoch(value))
    return value


class Bridge(BaseHTTPRequestHandler):
    moto = ""
    captured = []
    lock = threading.Lock()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/captured":
            self.send_error(404)
            return
        namespace = urllib.parse.parse_qs(url.query).get("namespace", [None])[0]
        with Bridge.lock:
            requests = [r for r in Bridge.captured if namespace is None or r.get("Namespace") == namespace]
        data = json.dumps(requests).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if not self.path.startswith(PATH_PREFIX):
            self.reply(404, {"__type": "UnknownOperation", "message": f"not a CloudWatch RPC v2 path: {self.path}"})
            return
        operation = self.path[len(PATH_PREFIX):]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        request = to_json(cbor2.loads(body)) if body else {}
        if operation == "PutMetricData":
            with Bridge.lock:
                Bridge.captured.append(request)
        forward = urllib.request.Request(
            self.moto + "/",
            data=json.dumps(request).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"{TARGET_PREFIX}.{operation}",
                "Authorization": self.headers.get("Authorization", ""),
            },
        )
        try:
            with urllib.request.urlopen(forward) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        try:
            answer = json.loads(payload) if payload.strip() else {}
        except ValueError:
            answer = {"__type": "InternalServiceFault", "message": payload.decode(errors="replace")}
            status = 500
        self.reply(status, to_cbor(answer))

    def reply(self, status, answer):
        data = cbor2.dumps(answer)
        self.send_response(status)
        self.send_header("Content-Type", "application/cbor")
        self.send_header("smithy-protocol", "rpc-v2-cbor")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


def main():
    Bridge.moto = sys.argv[1].rstrip("/")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bridge)
    print(f"Bridging on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
