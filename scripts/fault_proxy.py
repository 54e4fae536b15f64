"""Test-only fault-injecting HTTP proxy in front of one AWS emulator (moto, kinesalite, the CloudWatch CBOR bridge).

What it is for: the emulators never fail, production does. Tests point chimewatch's AWS clients at this proxy instead
of the emulator and ask it to inject, per AWS service and operation, the faults production throws: throttling,
partial PutRecords failures, 500/503 answers, slow answers and connection resets. The suite then proves that no
event chimewatch acknowledged is lost under each fault (every acknowledged event is in the emulator afterwards).

Usage: python fault_proxy.py UPSTREAM_URL [--seed N] [--verbose]
It binds 127.0.0.1 on a free port and prints `Proxying on http://127.0.0.1:PORT`. Standard library only.

Forwarding: every request other than the control API is forwarded to UPSTREAM_URL with its method, path, headers and
body byte for byte (request signatures stay valid; only hop-by-hop headers, Connection/Keep-Alive/Expect/TE/Upgrade,
are not passed on, and the proxy answers `Expect: 100-continue` itself; header order and name case are kept, the
optional whitespace around a header value is not part of it and is not kept). Bodies with `Content-Length` or
`Transfer-Encoding: chunked` (chunk extensions and trailers included) are passed through as framed, those over 1 MiB
or chunked streamed; `Content-Encoding: aws-chunked` bodies are opaque bytes to the proxy. Answers are streamed back
(a chunked answer is re-chunked; its trailers are dropped). Client and upstream connections are kept alive. Only
`partial` rewrites a body (and fixes Content-Length); emulators check no signature.

Requests are identified as (service, operation):
  * `X-Amz-Target: Kinesis_20131202.PutRecords` -> (kinesis, PutRecords); also DynamoDB_20120810 -> dynamodb,
    Logs_20140328 -> logs, GraniteServiceVersion20100801 -> cloudwatch;
  * `POST /service/GraniteServiceVersion20100801/operation/<Op>` (Smithy RPC v2 CBOR) -> (cloudwatch, <Op>);
  * form-encoded query requests -> (service of the SigV4 credential scope, Action);
  * anything else is S3 REST -> (s3, PutObject | GetObject | ListObjectsV2 | DeleteObjects | UploadPart | ...), from
    the method, path and query (the Rust SDK's `x-id=` query parameter wins when present).

Control API, on the same port (paths the emulators never use):
  POST   /_faults          JSON rule (or a list of rules) -> 201 {"id": N, ...}. Fields:
           service     "kinesis" | "dynamodb" | "logs" | "cloudwatch" | "s3" | "*" (aliases: cloudwatchlogs,
                       monitoring, ...)
           operation   e.g. "PutRecords"; absent: every operation of the service
           mode        "throttle" | "partial" | "error500" | "latency" | "reset"
           rate        fraction of matching requests to inject into, or for `partial` of the entries to fail
                       (default 1.0)
           latency_ms  for `latency` (required there)
           count       stop after injecting N times (absent: never stop)
           error_code  optional override of the injected error code (e.g. "ThrottlingException" for DynamoDB)
           status      for `error500`: 500 (default, InternalFailure/InternalServerError/InternalError) or 503
                       (ServiceUnavailable)
           seed        optional seed of this rule's random.Random (default: derived from --seed and the rule id)
         Several rules may be active; they are tried in the order added, and the first matching rule that fires
         applies.
  GET    /_faults          the rules, with how often each injected and how many injections remain
  DELETE /_faults          removes every rule; DELETE /_faults/<id> removes one (404 when unknown)
  GET    /_faults/stats    counters: requests seen, forwarded, answered by the proxy without forwarding, upstream
                           errors, client aborts, injections by (service, operation, mode), PutRecords entries failed
                           by `partial`; per (service, operation) too. While no request is in flight:
                           requests == forwarded + not_forwarded + upstream_errors + client_aborted.
  DELETE /_faults/stats    resets the counters

Modes:
  throttle  answered as the service answers throttling, not forwarded (wire formats in `throttle_error`).
  partial   Kinesis PutRecords only: fails floor(rate * entries) entries, plus one more with probability equal to the
            fraction left over (so rate * entries on average, and exactly 3 of 10 at rate 0.3), at positions drawn at
            random; they are removed from the request before forwarding so the upstream never stores them; the answer
            is rebuilt in the original order with ProvisionedThroughputExceededException at the failed positions and
            FailedRecordCount adjusted. When every entry fails nothing is forwarded. A request in which no entry is
            picked does not count as fired.
  error500  HTTP 500 (or `status` 503) with the service's internal-error body, not forwarded.
  latency   forwarded; the answer is held back latency_ms after the upstream answered (so the upstream has already
            acted on it: a client timeout then sees a request that did succeed).
  reset     the request is read in full, then the TCP connection is closed with SO_LINGER 0: the client sees a
            connection reset and no response; not forwarded.

Randomness comes from seeded random.Random instances (one per rule, derived from --seed, default 20240601), so a run
that sends the same requests in the same order injects the same faults.
"""

import argparse
import http.client
import io
import json
import random
import re
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTROL_PATH = "/_faults"
MODES = ("throttle", "partial", "error500", "latency", "reset")
DEFAULT_SEED = 20240601
ACCOUNT = "123456789012"  # moto's default account, used in Kinesis' error messages
BUFFER_LIMIT = 1 << 20  # bodies up to this size (with a Content-Length) are read before forwarding, larger streamed
PIECE = 1 << 16
# Not passed on (RFC 9110 section 7.6.1; Expect because the proxy answers 100-continue itself).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "upgrade", "expect", "proxy-authenticate",
              "proxy-authorization"}

TARGET_PREFIXES = {
    "kinesis_20131202": "kinesis",
    "dynamodb_20120810": "dynamodb",
    "dynamodbstreams_20120810": "dynamodbstreams",
    "logs_20140328": "logs",
    "graniteserviceversion20100801": "cloudwatch",
}
SERVICE_ALIASES = {
    "cloudwatchlogs": "logs", "cloudwatch-logs": "logs", "cloudwatch_logs": "logs",
    "monitoring": "cloudwatch", "cloud-watch": "cloudwatch",
    "streams.dynamodb": "dynamodbstreams",
}
JSON_VERSION = {"kinesis": "1.1", "logs": "1.1", "dynamodb": "1.0", "dynamodbstreams": "1.0", "cloudwatch": "1.0"}
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
KINESIS_DATA_PLANE = {"PutRecord", "PutRecords", "GetRecords", "GetShardIterator"}

S3_BUCKET_SUBRESOURCES = {
    "versioning": "BucketVersioning", "policy": "BucketPolicy", "lifecycle": "BucketLifecycleConfiguration",
    "tagging": "BucketTagging", "cors": "BucketCors", "notification": "BucketNotificationConfiguration",
    "encryption": "BucketEncryption", "acl": "BucketAcl", "website": "BucketWebsite", "logging": "BucketLogging",
    "replication": "BucketReplication", "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock", "object-lock": "ObjectLockConfiguration",
    "accelerate": "BucketAccelerateConfiguration", "requestPayment": "BucketRequestPayment",
    "location": "BucketLocation", "policyStatus": "BucketPolicyStatus", "analytics": "BucketAnalyticsConfiguration",
    "inventory": "BucketInventoryConfiguration", "metrics": "BucketMetricsConfiguration",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration",
}
S3_OBJECT_SUBRESOURCES = {"tagging": "ObjectTagging", "acl": "ObjectAcl", "retention": "ObjectRetention",
                          "legal-hold": "ObjectLegalHold", "attributes": "ObjectAttributes"}
S3_VERB = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}


def normalize_service(name):
    name = str(name).strip().lower()
    return SERVICE_ALIASES.get(name, name)


# --- CBOR (RFC 8949), just what CloudWatch's error bodies need ------------------------------------------------------

def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([major << 5 | info]) + n.to_bytes(width, "big")
    raise ValueError("integer too large for CBOR")


def cbor_encode(value):
    """Definite-length CBOR of text strings, byte strings, integers, floats, booleans, null, lists and maps."""
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if value is None:
        return b"\xf6"
    if isinstance(value, int):
        return cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return cbor_head(3, len(data)) + data
    if isinstance(value, (bytes, bytearray)):
        return cbor_head(2, len(value)) + bytes(value)
    if isinstance(value, (list, tuple)):
        return cbor_head(4, len(value)) + b"".join(cbor_encode(v) for v in value)
    if isinstance(value, dict):
        return cbor_head(5, len(value)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in value.items())
    raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


# --- classification -------------------------------------------------------------------------------------------------

class Call:
    """What a request is: service, operation, and the wire protocol its errors must be written in."""

    def __init__(self, service, operation, protocol, json_version="1.1"):
        self.service = service
        self.operation = operation
        self.protocol = protocol  # "json" | "cbor" | "query" | "rest-xml"
        self.json_version = json_version


def credential_scope_service(headers, query):
    match = CREDENTIAL_SCOPE.search(headers.get("Authorization", ""))
    if match:
        return normalize_service(match.group(1))
    credential = query.get("X-Amz-Credential", [""])[0]
    parts = credential.split("/")
    return normalize_service(parts[3]) if len(parts) >= 5 else None


def s3_operation(method, path, query, headers):
    """The S3 REST operation of a request (path-style, or virtual-hosted on *.localhost / bucket.s3.*)."""
    if "x-id" in query:  # the AWS SDK for Rust names the operation itself
        return query["x-id"][0]
    host = headers.get("Host", "").rsplit(":", 1)[0] if "]" not in headers.get("Host", "") else ""
    host_bucket = None
    if host.endswith(".localhost"):
        host_bucket = host[: -len(".localhost")]
    else:
        match = re.match(r"^(.+?)\.s3[.-]", host)
        host_bucket = match.group(1) if match else None
    parts = path.lstrip("/").split("/", 1)
    if host_bucket:
        bucket, key = host_bucket, path.lstrip("/")
    else:
        bucket, key = parts[0], parts[1] if len(parts) > 1 else ""
    copy = "x-amz-copy-source" in {k.lower() for k in headers.keys()}
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method.title()}Service"
    if not key:
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        for sub, name in S3_BUCKET_SUBRESOURCES.items():
            if sub in query and method in S3_VERB:
                return S3_VERB[method] + name
        if method == "GET":
            if query.get("list-type", [""])[0] == "2":
                return "ListObjectsV2"
            if "uploads" in query:
                return "ListMultipartUploads"
            if "versions" in query:
                return "ListObjectVersions"
            return "ListObjects"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, f"{method}Bucket")
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "restore" in query:
            return "RestoreObject"
        if "select" in query:
            return "SelectObjectContent"
        return "PostObject"
    for sub, name in S3_OBJECT_SUBRESOURCES.items():
        if sub in query and method in S3_VERB:
            return S3_VERB[method] + name
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return f"{method}Object"


def classify(method, raw_path, headers, body_for_query=None):
    """Returns a Call; body_for_query(): the decoded body, called only for form-encoded query requests."""
    url = urllib.parse.urlsplit(raw_path)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    content_type = headers.get("Content-Type", "").lower()
    target = headers.get("X-Amz-Target")
    if target:
        prefix, _, operation = target.rpartition(".")
        service = TARGET_PREFIXES.get(prefix.lower()) or credential_scope_service(headers, query) \
            or normalize_service(prefix.split("_")[0])
        version = re.search(r"x-amz-json-(1\.[01])", content_type)
        return Call(service, operation, "json", version.group(1) if version else JSON_VERSION.get(service, "1.1"))
    match = re.match(r"^/service/([^/]+)/operation/([^/?]+)", url.path)
    if match:
        service = TARGET_PREFIXES.get(match.group(1).lower()) or credential_scope_service(headers, query) \
            or match.group(1).lower()
        return Call(service, urllib.parse.unquote(match.group(2)), "cbor")
    scope = credential_scope_service(headers, query)
    if method == "POST" and content_type.startswith("application/x-www-form-urlencoded") and body_for_query:
        form = urllib.parse.parse_qs(body_for_query().decode("utf-8", "replace"), keep_blank_values=True)
        if "Action" in form:
            return Call(scope or "unknown", form["Action"][0], "query")
    if scope in (None, "s3"):
        return Call("s3", s3_operation(method, url.path, query, headers), "rest-xml")
    return Call(scope, "Unknown", "json", JSON_VERSION.get(scope, "1.1"))


# --- injected answers -----------------------------------------------------------------------------------------------

class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


def request_id():
    return str(uuid.uuid4())


def error_answer(call, status, code, message, query_type="Sender", request=None):
    """An error in the wire format of the call's protocol."""
    rid = request_id()
    if call.protocol == "rest-xml":
        resource = (request or {}).get("path", "/")
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<Resource>{xml_escape(resource)}</Resource><RequestId>{rid[:16].upper()}</RequestId>"
                f"<HostId>fault-proxy</HostId></Error>").encode()
        return Answer(status, [("Content-Type", "application/xml"), ("x-amz-request-id", rid[:16].upper()),
                               ("x-amz-id-2", "fault-proxy")], body)
    if call.protocol == "query":
        body = (f'<ErrorResponse><Error><Type>{query_type}</Type><Code>{code}</Code><Message>{message}</Message>'
                f"</Error><RequestId>{rid}</RequestId></ErrorResponse>").encode()
        return Answer(status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], body)
    headers = [("x-amzn-RequestId", rid)]
    if call.service == "cloudwatch":  # awsQueryCompatible: the SDKs take the code from this header when present
        headers.append(("x-amzn-query-error", f"{code.rsplit('#', 1)[-1]};{query_type}"))
    if call.protocol == "cbor":
        body = cbor_encode({"__type": code, "message": message})
        headers += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        return Answer(status, headers, body)
    body = json.dumps({"__type": code, "message": message}).encode()
    headers.append(("Content-Type", f"application/x-amz-json-{call.json_version}"))
    if call.service == "dynamodb":
        headers.append(("x-amz-crc32", str(zlib.crc32(body))))
    return Answer(status, headers, body)


def xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def kinesis_stream(request_json):
    if not isinstance(request_json, dict):
        return "unknown"
    name = request_json.get("StreamName")
    if not name and isinstance(request_json.get("StreamARN"), str):
        name = request_json["StreamARN"].rsplit("/", 1)[-1]
    return name or "unknown"


def kinesis_rate_message(stream, shard="shardId-000000000000"):
    return f"Rate exceeded for shard {shard} in stream {stream} under account {ACCOUNT}."


def throttle_error(call, rule, request):
    """How each service answers throttling.

    kinesis   400 awsJson 1.1 {"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded for
              shard ..."} for PutRecord(s)/GetRecords/GetShardIterator; LimitExceededException for control-plane calls
    dynamodb  400 awsJson 1.0 {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}
              or, with error_code "ThrottlingException", "com.amazon.coral.availability#ThrottlingException"
    logs      400 awsJson 1.1 {"__type": "ThrottlingException", "message": "Rate exceeded"}
    cloudwatch 400 CBOR map {"__type": "Throttling", "message": "Rate exceeded"}, header
              `x-amzn-query-error: Throttling;Sender` (awsJson 1.0 / query XML when the request came that way)
    s3        503 <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>...</Error>
    """
    code = rule.error_code
    service = call.service
    if service == "kinesis":
        stream = kinesis_stream(request.get("json"))
        if (code or ("ProvisionedThroughputExceededException" if call.operation in KINESIS_DATA_PLANE
                     else "LimitExceededException")) == "LimitExceededException":
            return error_answer(call, 400, "LimitExceededException",
                                f"Rate exceeded for stream {stream} under account {ACCOUNT}.")
        shard = (request.get("json") or {}).get("ShardId") if isinstance(request.get("json"), dict) else None
        return error_answer(call, 400, code or "ProvisionedThroughputExceededException",
                            kinesis_rate_message(stream, shard or "shardId-000000000000"))
    if service in ("dynamodb", "dynamodbstreams"):
        if code in ("ThrottlingException", "com.amazon.coral.availability#ThrottlingException"):
            return error_answer(call, 400, "com.amazon.coral.availability#ThrottlingException",
                                "Rate of requests exceeds the allowed throughput.")
        code = code or "ProvisionedThroughputExceededException"
        return error_answer(call, 400, code if "#" in code else f"com.amazonaws.dynamodb.v20120810#{code}",
                            "The level of configured provisioned throughput for the table was exceeded. "
                            "Consider increasing your provisioning level with the UpdateTable API.")
    if service == "s3":
        return error_answer(call, 503, code or "SlowDown", "Please reduce your request rate.", request=request)
    if service == "cloudwatch":
        return error_answer(call, 400, code or "Throttling", "Rate exceeded")
    return error_answer(call, 400, code or "ThrottlingException", "Rate exceeded")


def internal_error(call, rule, request):
    """500: kinesis/logs InternalFailure, dynamodb InternalServerError, cloudwatch InternalServiceError, s3
    InternalError; 503 (status 503): ServiceUnavailable (logs: ServiceUnavailableException)."""
    service, code = call.service, rule.error_code
    if rule.status == 503:
        if service == "s3":
            return error_answer(call, 503, code or "ServiceUnavailable", "Reduce your request rate.",
                                request=request)
        default = "ServiceUnavailableException" if service == "logs" else "ServiceUnavailable"
        if service == "dynamodb" and not code:
            default = "com.amazonaws.dynamodb.v20120810#ServiceUnavailable"
        return error_answer(call, 503, code or default, "Service unavailable", query_type="Receiver")
    if service == "s3":
        return error_answer(call, 500, code or "InternalError", "We encountered an internal error. Please try again.",
                            request=request)
    if service in ("dynamodb", "dynamodbstreams"):
        return error_answer(call, 500, code or "com.amazonaws.dynamodb.v20120810#InternalServerError",
                            "Internal server error", query_type="Receiver")
    if service == "cloudwatch":
        return error_answer(call, 500, code or "InternalServiceError", "Internal service error",
                            query_type="Receiver")
    return error_answer(call, 500, code or "InternalFailure", "Internal service failure", query_type="Receiver")


# --- rules and stats ------------------------------------------------------------------------------------------------

class RuleError(ValueError):
    pass


class Rule:
    def __init__(self, rule_id, spec, base_seed):
        if not isinstance(spec, dict):
            raise RuleError("a rule is a JSON object")
        unknown = set(spec) - {"service", "operation", "mode", "rate", "latency_ms", "count", "error_code", "status",
                               "seed"}
        if unknown:
            raise RuleError(f"unknown rule fields: {sorted(unknown)}")
        if "service" not in spec:
            raise RuleError("service is required (\"*\" for every service)")
        self.id = rule_id
        self.service = normalize_service(spec["service"])
        self.operation = spec.get("operation")
        if self.operation is not None and not isinstance(self.operation, str):
            raise RuleError("operation must be a string")
        self.mode = spec.get("mode")
        if self.mode not in MODES:
            raise RuleError(f"mode must be one of {', '.join(MODES)}")
        self.rate = spec.get("rate", 1.0)
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 <= self.rate <= 1:
            raise RuleError("rate must be a number from 0 to 1")
        self.rate = float(self.rate)
        self.latency_ms = spec.get("latency_ms")
        if self.mode == "latency":
            if isinstance(self.latency_ms, bool) or not isinstance(self.latency_ms, (int, float)) \
                    or self.latency_ms < 0:
                raise RuleError("latency mode needs latency_ms >= 0")
        self.count = spec.get("count")
        if self.count is not None and (isinstance(self.count, bool) or not isinstance(self.count, int)
                                       or self.count < 0):
            raise RuleError("count must be a non-negative integer")
        self.error_code = spec.get("error_code")
        if self.error_code is not None and not isinstance(self.error_code, str):
            raise RuleError("error_code must be a string")
        self.status = spec.get("status", 500)
        if self.status not in (500, 503):
            raise RuleError("status must be 500 or 503")
        if self.mode == "partial":
            if self.service != "kinesis" or self.operation not in (None, "PutRecords"):
                raise RuleError("partial applies to Kinesis PutRecords only")
        seed = spec.get("seed")
        self.seed = seed if seed is not None else f"{base_seed}:{rule_id}"
        self.rng = random.Random(self.seed)
        self.injected = 0

    def describe(self):
        return {"id": self.id, "service": self.service, "operation": self.operation, "mode": self.mode,
                "rate": self.rate, "latency_ms": self.latency_ms, "count": self.count,
                "error_code": self.error_code, "status": self.status if self.mode == "error500" else None,
                "seed": self.seed, "injected": self.injected,
                "remaining": None if self.count is None else max(0, self.count - self.injected)}

    def matches(self, call):
        if self.count is not None and self.injected >= self.count:
            return False
        if self.service != "*" and self.service != call.service:
            return False
        if self.mode == "partial":
            return call.service == "kinesis" and call.operation == "PutRecords"
        return self.operation is None or self.operation == call.operation


class Decision:
    def __init__(self, rule, failed=()):
        self.rule = rule
        self.mode = rule.mode
        self.failed = failed  # partial: sorted positions of the entries to fail


class OperationStats:
    def __init__(self):
        self.requests = self.forwarded = self.not_forwarded = self.upstream_errors = self.client_aborted = 0
        self.entries_failed = 0
        self.injected = {}


class State:
    """Rules and counters, shared by the handler threads under one lock."""

    def __init__(self, seed):
        self.seed = seed
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1
        self.ops = {}

    def add_rules(self, specs):
        """Adds every rule, or none when one is invalid (RuleError)."""
        with self.lock:
            rules = [Rule(self.next_id + i, spec, self.seed) for i, spec in enumerate(specs)]
            self.next_id += len(rules)
            self.rules.extend(rules)
            return [rule.describe() for rule in rules]

    def describe_rules(self):
        with self.lock:
            return [rule.describe() for rule in self.rules]

    def has_partial_rule(self):
        with self.lock:
            return any(r.mode == "partial" for r in self.rules)

    def op(self, call):
        return self.ops.setdefault((call.service, call.operation), OperationStats())

    def seen(self, call):
        with self.lock:
            self.op(call).requests += 1

    def decide(self, call, entries=None):
        """Picks the first matching rule that fires, or None. entries: the PutRecords entry count, if known."""
        with self.lock:
            for rule in self.rules:
                if not rule.matches(call):
                    continue
                if rule.mode == "partial":
                    if not entries:
                        continue
                    exact = rule.rate * entries
                    k = int(exact)
                    if rule.rng.random() < exact - k:
                        k += 1
                    if k == 0:
                        continue
                    failed = sorted(rule.rng.sample(range(entries), k))
                    decision = Decision(rule, failed)
                elif rule.rng.random() < rule.rate:
                    decision = Decision(rule)
                else:
                    continue
                rule.injected += 1
                stats = self.op(call)
                stats.injected[rule.mode] = stats.injected.get(rule.mode, 0) + 1
                stats.entries_failed += len(decision.failed)
                return decision
            return None

    def outcome(self, call, field):
        with self.lock:
            stats = self.op(call)
            setattr(stats, field, getattr(stats, field) + 1)

    def snapshot(self):
        with self.lock:
            per_op = []
            injections = []
            totals = dict(requests=0, forwarded=0, not_forwarded=0, upstream_errors=0, client_aborted=0,
                          injected=0, entries_failed=0)
            for (service, operation), s in sorted(self.ops.items()):
                row = {"service": service, "operation": operation, "requests": s.requests,
                       "forwarded": s.forwarded, "not_forwarded": s.not_forwarded,
                       "upstream_errors": s.upstream_errors, "client_aborted": s.client_aborted,
                       "injected": dict(sorted(s.injected.items())), "entries_failed": s.entries_failed}
                per_op.append(row)
                for mode, n in sorted(s.injected.items()):
                    injections.append({"service": service, "operation": operation, "mode": mode, "count": n})
                for key in ("requests", "forwarded", "not_forwarded", "upstream_errors", "client_aborted",
                            "entries_failed"):
                    totals[key] += row[key]
                totals["injected"] += sum(s.injected.values())
            injected_by_mode = {}
            for item in injections:
                injected_by_mode[item["mode"]] = injected_by_mode.get(item["mode"], 0) + item["count"]
            return {**totals, "injected_by_mode": injected_by_mode, "injections": injections,
                    "by_operation": per_op}


# --- the server -----------------------------------------------------------------------------------------------------

class ClientAborted(Exception):
    pass


class Body:
    """The request body as it arrives: pieces of the raw (framed) bytes, with the payload they carry."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        te = headers.get("Transfer-Encoding", "")
        self.chunked = "chunked" in te.lower()
        length = headers.get("Content-Length")
        self.length = int(length) if length and length.strip().isdigit() and not self.chunked else 0
        self.raw = None  # bytes once buffered
        self.payload = None
        self.consumed = False

    def small(self):
        return not self.chunked and self.length <= BUFFER_LIMIT

    def pieces(self):
        """(raw, payload) pairs straight off the socket."""
        if self.consumed:
            raise RuntimeError("body already read")
        self.consumed = True
        if not self.chunked:
            remaining = self.length
            while remaining:
                data = self.rfile.read(min(remaining, PIECE))
                if not data:
                    raise ClientAborted("body ended early")
                remaining -= len(data)
                yield data, data
            return
        while True:
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise ClientAborted("bad chunk header")
            yield line, b""
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as error:
                raise ClientAborted(f"bad chunk size {line!r}") from error
            if size == 0:
                while True:  # trailer section, up to and including the empty line
                    trailer = self.rfile.readline(65537)
                    if not trailer.endswith(b"\n"):
                        raise ClientAborted("bad trailer")
                    yield trailer, b""
                    if trailer in (b"\r\n", b"\n"):
                        return
            remaining = size
            while remaining:
                data = self.rfile.read(min(remaining, PIECE))
                if not data:
                    raise ClientAborted("chunk ended early")
                remaining -= len(data)
                yield data, data
            crlf = self.rfile.readline(3)
            if crlf not in (b"\r\n", b"\n"):
                raise ClientAborted("chunk not followed by CRLF")
            yield crlf, b""

    def buffer(self):
        if self.raw is None:
            raw, payload = [], []
            for r, p in self.pieces():
                raw.append(r)
                payload.append(p)
            self.raw, self.payload = b"".join(raw), b"".join(payload)
        return self.payload

    def raw_pieces(self):
        if self.raw is not None:
            if self.raw:
                yield self.raw
            return
        for raw, _ in self.pieces():
            yield raw

    def drain(self):
        if self.raw is None and not self.consumed:
            for _ in self.pieces():
                pass


class UpstreamError(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-proxy"
    timeout = 600  # idle keep-alive connections are dropped after this
    state = None
    upstream = None  # urllib.parse.SplitResult
    verbose = False

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream_conn = None
        self.upstream_reused = False

    def finish(self):
        try:
            super().finish()
        finally:
            if self.upstream_conn is not None:
                self.upstream_conn.close()

    def log_message(self, format, *args):
        if self.verbose:
            sys.stderr.write("fault_proxy: %s - %s\n" % (self.address_string(), format % args))

    def __getattr__(self, name):
        if name.startswith("do_"):  # every method is proxied
            return self.dispatch
        raise AttributeError(name)

    # --- entry point

    def dispatch(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            self.control(path)
            return
        body = Body(self.rfile, self.headers)
        call = None
        self.recorded = False
        try:
            call = classify(self.command, self.path, self.headers, body.buffer)
            self.state.seen(call)
            request = {"path": path, "json": None}
            entries = None
            if call.service == "kinesis" and body.small() or call.protocol == "query":
                payload = body.buffer()
                try:
                    request["json"] = json.loads(payload) if payload else None
                except ValueError:
                    pass
                if call.operation == "PutRecords" and isinstance(request["json"], dict) \
                        and isinstance(request["json"].get("Records"), list):
                    entries = len(request["json"]["Records"])
            elif call.service == "kinesis" and call.operation == "PutRecords" and self.state.has_partial_rule():
                payload = body.buffer()  # a chunked or large PutRecords: partial needs its entries
                try:
                    request["json"] = json.loads(payload)
                    entries = len(request["json"]["Records"])
                except (ValueError, KeyError, TypeError):
                    pass
            decision = self.state.decide(call, entries)
            if decision is None:
                self.forward(call, body)
                return
            if self.verbose:
                sys.stderr.write(f"fault_proxy: {decision.mode} {call.service}.{call.operation}\n")
            if decision.mode in ("throttle", "error500"):
                body.drain()
                answer = (throttle_error if decision.mode == "throttle" else internal_error)(
                    call, decision.rule, request)
                self.record(call, "not_forwarded")
                self.reply(answer)
            elif decision.mode == "reset":
                body.drain()
                self.record(call, "not_forwarded")
                self.reset_connection()
            elif decision.mode == "latency":
                self.forward(call, body, delay=decision.rule.latency_ms / 1000)
            else:
                self.partial(call, body, request["json"], decision.failed)
        except (ClientAborted, ConnectionError, socket.timeout, http.client.HTTPException) as error:
            # The exchange broke off: the client went away, or the upstream's answer was cut short while relayed.
            if call is not None and not self.recorded:
                self.record(call, "client_aborted")
            self.log_message("exchange broken off: %s: %s", type(error).__name__, error)
            self.close_connection = True
            if self.upstream_conn is not None:
                self.upstream_conn.close()

    def record(self, call, outcome):
        """Counts how the request ended, once: forwarded, not_forwarded, upstream_errors or client_aborted."""
        self.recorded = True
        self.state.outcome(call, outcome)

    # --- answers

    def reply(self, answer, extra_close=False):
        self.send_response_only(answer.status)
        self.send_header("Date", self.date_time_string())
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection or extra_close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and answer.body:
            self.wfile.write(answer.body)

    def reply_json(self, status, value):
        self.reply(Answer(status, [("Content-Type", "application/json")], json.dumps(value).encode()))

    def reset_connection(self):
        """Closes the client connection with a TCP RST (SO_LINGER 0) and no response."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for stream in (self.rfile, self.wfile):
            try:
                stream.close()
            except OSError:
                pass
        self.connection.close()  # with no makefile() left open this is the real close(2): the kernel sends RST
        # What http.server does after the handler (flush, finish, shutdown) then meets these harmless stand-ins.
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()

    # --- forwarding

    def upstream_connection(self):
        if self.upstream_conn is not None and self.upstream_conn.sock is not None:
            # An idle kept-alive connection the upstream has closed reads as readable (EOF): do not reuse it.
            readable, _, _ = select.select([self.upstream_conn.sock], [], [], 0)
            if readable:
                self.upstream_conn.close()
        if self.upstream_conn is None:
            cls = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
            self.upstream_conn = cls(self.upstream.hostname, self.upstream.port, timeout=300)
        self.upstream_reused = self.upstream_conn.sock is not None
        return self.upstream_conn

    def forward_headers(self, replace_body=None):
        connection_tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",") if t.strip()}
        headers = []
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens:
                continue
            if replace_body is not None and lower in ("content-length", "transfer-encoding"):
                continue
            headers.append((name, value))
        if replace_body is not None:
            headers.append(("Content-Length", str(len(replace_body))))
        return headers

    def send_upstream(self, headers, pieces, retry_body=None):
        """Sends the request upstream and returns the response (headers read, body not yet)."""
        path = (self.upstream.path.rstrip("/") + self.path) if self.upstream.path not in ("", "/") else self.path
        for attempt in (1, 2):
            conn = self.upstream_connection()
            try:
                conn.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders()
                for piece in pieces:
                    conn.send(piece)
                return conn.getresponse()
            except ClientAborted:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                if attempt == 1 and self.upstream_reused and retry_body is not None:
                    pieces = [retry_body] if retry_body else []
                    continue
                raise UpstreamError(f"{type(error).__name__}: {error}") from error
        raise AssertionError("unreachable")

    def forward(self, call, body, delay=0.0):
        if body.small():
            body.buffer()  # small bodies are read first, so a stale kept-alive upstream connection can be retried
        try:
            response = self.send_upstream(self.forward_headers(), body.raw_pieces(), retry_body=body.raw)
        except UpstreamError as error:
            self.upstream_failed(call, body, error)
            return
        self.record(call, "forwarded")
        if delay:
            time.sleep(delay)
        self.relay(response)

    def upstream_failed(self, call, body, error):
        self.record(call, "upstream_errors")
        sys.stderr.write(f"fault_proxy: upstream failed for {call.service}.{call.operation}: {error}\n")
        try:
            body.drain()
        except ClientAborted:
            self.close_connection = True
        self.reply(Answer(502, [("Content-Type", "text/plain")], f"fault_proxy: upstream failed: {error}".encode()),
                   extra_close=True)
        self.close_connection = True

    def relay(self, response):
        """Streams the upstream response to the client."""
        self.send_response_only(response.status, response.reason)
        upstream_chunked = False
        length = None
        for name, value in response.getheaders():
            lower = name.lower()
            if lower == "transfer-encoding":
                upstream_chunked = True
                continue
            if lower in HOP_BY_HOP:
                continue
            if lower == "content-length":
                length = value
            self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        rechunk = not no_body and (upstream_chunked or length is None)
        if rechunk and self.request_version == "HTTP/1.0":
            rechunk = False
            self.close_connection = True
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        if response.will_close and not rechunk and length is None and not no_body:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if no_body:
            response.read()
            return
        while True:
            data = response.read(PIECE)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if rechunk else data)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")

    # --- partial PutRecords

    def partial(self, call, body, request_json, failed):
        records = request_json["Records"]
        failed_set = set(failed)
        stream = kinesis_stream(request_json)
        failure = {"ErrorCode": "ProvisionedThroughputExceededException",
                   "ErrorMessage": kinesis_rate_message(stream)}
        kept = [r for i, r in enumerate(records) if i not in failed_set]
        if not kept:
            self.record(call, "not_forwarded")
            answer = {"FailedRecordCount": len(records), "Records": [dict(failure) for _ in records]}
            self.reply(Answer(200, [("x-amzn-RequestId", request_id()),
                                    ("Content-Type", f"application/x-amz-json-{call.json_version}")],
                              json.dumps(answer, separators=(",", ":")).encode()))
            return
        rewritten = json.dumps({**request_json, "Records": kept}, separators=(",", ":")).encode()
        try:
            response = self.send_upstream(self.forward_headers(rewritten), [rewritten], retry_body=rewritten)
        except UpstreamError as error:
            self.upstream_failed(call, body, error)
            return
        self.record(call, "forwarded")
        payload = response.read()
        if response.status != 200:  # the whole request failed upstream: pass that on as it is
            headers = [(n, v) for n, v in response.getheaders()
                       if n.lower() not in HOP_BY_HOP and n.lower() not in ("content-length", "transfer-encoding")]
            self.reply(Answer(response.status, headers, payload))
            return
        try:
            upstream_answer = json.loads(payload)
            results = upstream_answer["Records"]
            if len(results) != len(kept):
                raise ValueError(f"{len(results)} results for {len(kept)} records")
        except (ValueError, KeyError, TypeError) as error:
            sys.stderr.write(f"fault_proxy: cannot merge the PutRecords answer: {error}\n")
            self.reply(internal_error(call, _Plain500, {"path": "/"}))
            return
        merged, upstream_results = [], iter(results)
        for i in range(len(records)):
            merged.append(dict(failure) if i in failed_set else next(upstream_results))
        answer = dict(upstream_answer)
        answer["Records"] = merged
        answer["FailedRecordCount"] = sum(1 for r in merged if r.get("ErrorCode"))
        data = json.dumps(answer, separators=(",", ":")).encode()
        headers = []
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in ("content-length", "transfer-encoding"):
                continue
            if lower == "x-amz-crc32":
                value = str(zlib.crc32(data))
            headers.append((name, value))
        self.reply(Answer(200, headers, data))

    # --- control API

    def control(self, path):
        body = Body(self.rfile, self.headers)
        try:
            payload = body.buffer()
        except ClientAborted:
            self.close_connection = True
            return
        rest = path[len(CONTROL_PATH):].strip("/")
        method = self.command
        if method == "POST" and rest == "":
            try:
                spec = json.loads(payload or b"null")
                added = self.state.add_rules(spec if isinstance(spec, list) else [spec])
            except (ValueError, RuleError) as error:
                self.reply_json(400, {"error": str(error)})
                return
            self.reply_json(201, added if isinstance(spec, list) else added[0])
        elif method == "GET" and rest == "":
            self.reply_json(200, self.state.describe_rules())
        elif method == "DELETE" and rest == "":
            with self.state.lock:
                removed = len(self.state.rules)
                self.state.rules.clear()
            self.reply_json(200, {"removed": removed})
        elif rest == "stats" and method == "GET":
            self.reply_json(200, self.state.snapshot())
        elif rest == "stats" and method == "DELETE":
            with self.state.lock:
                self.state.ops.clear()
            self.reply_json(200, {"reset": True})
        elif method == "DELETE" and rest.isdigit():
            with self.state.lock:
                before = len(self.state.rules)
                self.state.rules = [r for r in self.state.rules if r.id != int(rest)]
                removed = before - len(self.state.rules)
            self.reply_json(200 if removed else 404, {"removed": removed})
        else:
            self.reply_json(404, {"error": f"no control endpoint {method} {path}"})


class _Plain500:
    """A stand-in rule for internal 500 answers the proxy gives on its own."""
    error_code = None
    status = 500


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", help="the emulator's URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the fault decisions")
    parser.add_argument("--verbose", action="store_true", help="log every request and injection to stderr")
    args = parser.parse_args(argv)
    upstream = urllib.parse.urlsplit(args.upstream)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        parser.error(f"not an http(s) URL: {args.upstream}")
    Handler.state = State(args.seed)
    Handler.upstream = upstream
    Handler.verbose = args.verbose
    server = Server(("127.0.0.1", 0), Handler)
    print(f"Proxying on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
