"""Tests of scripts/cloudwatch_cbor_bridge.py: valid PutMetricData reaches moto; invalid is refused as by CloudWatch.

Usage: python scripts/test_cloudwatch_cbor_bridge.py MOTO_URL, with moto_server running at MOTO_URL. It starts the
bridge in front of moto, posts CBOR requests encoded as aws-sdk-cloudwatch for Rust encodes them (aws-smithy-cbor:
indefinite-length maps, float64 doubles, timestamps as tag 1 over a float64; headers `smithy-protocol: rpc-v2-cbor`,
`Content-Type: application/cbor`, `x-amzn-query-mode: true`; gzip from 10 KB), checks each answer on the wire, then
`/captured` and `/rejected`; when boto3 is installed it also sends requests through botocore, whose CloudWatch client
speaks RPC v2 CBOR too, and checks the error code it reads. It stops the bridge when done; exit status 1 on a failure.
"""

import gzip
import json
import math
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import cbor2

BRIDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cloudwatch_cbor_bridge.py")
PATH = "/service/GraniteServiceVersion20100801/operation/"
SHAPES = {
    "InvalidParameterValue": "com.amazonaws.cloudwatch#InvalidParameterValueException",
    "InvalidParameterCombination": "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
    "MissingParameter": "com.amazonaws.cloudwatch#MissingRequiredParameterException",
    "RequestEntityTooLarge": "RequestEntityTooLarge",
}
RUN = uuid.uuid4().hex[:8]
NOW = time.time()
failures = []


class Timestamp:
    """A Smithy timestamp: encoded as CBOR tag 1 over a float64 of epoch seconds."""

    def __init__(self, seconds):
        self.seconds = seconds


def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for size, code in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | code]) + n.to_bytes(size, "big")
    raise ValueError(n)


def encode(value):
    """CBOR as aws-smithy-cbor's Encoder writes a request: structures as indefinite-length maps, lists with their
    length, strings with theirs, doubles always as float64, integers in their shortest form."""
    if isinstance(value, dict):
        # Unset members (None here) are left out, as the SDK leaves them out.
        return b"\xbf" + b"".join(encode(k) + encode(v) for k, v in value.items() if v is not None) + b"\xff"
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, str):
        data = value.encode()
        return head(3, len(data)) + data
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, Timestamp):
        return b"\xc1\xfb" + struct.pack(">d", value.seconds)
    raise TypeError(value)


def post(url, operation, request, compress=None):
    """Posts a request as the Rust SDK does; returns (status, headers, decoded CBOR body)."""
    body = encode(request)
    headers = {
        "Content-Type": "application/cbor",
        "Accept": "application/cbor",
        "smithy-protocol": "rpc-v2-cbor",
        "x-amzn-query-mode": "true",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/monitoring/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    # The SDK's request compression: gzip once the body reaches 10,240 bytes (its default minimum).
    if compress if compress is not None else len(body) >= 10240:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    call = urllib.request.Request(url + PATH + operation, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(call) as response:
            status, headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, payload = error.code, error.headers, error.read()
    return status, headers, cbor2.loads(payload) if payload else None


def get_json(url):
    def strict(constant):
        raise ValueError(f"not strict JSON: {constant}")

    with urllib.request.urlopen(url) as response:
        return json.loads(response.read(), parse_constant=strict)


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(name)


def datum(**fields):
    """A datum that keeps every rule; `fields` replace or (as None) remove its members."""
    d = {
        "MetricName": "meetingStartDurationMs",
        "Dimensions": [{"Name": "sdkName", "Value": "amazon-chime-sdk-js"}],
        "Timestamp": Timestamp(NOW - 60),
        "Value": 250.0,
        "Unit": "Milliseconds",
        "StorageResolution": 60,
    }
    d.update(fields)
    return {k: v for k, v in d.items() if v is not None}


def third(**fields):
    """Three datums, the third one with `fields`: messages must name MetricData.member.3."""
    return [datum(), datum(MetricName="other"), datum(**fields)]


def dims(*pairs):
    return [{"Name": n, "Value": v} for n, v in pairs]


M3 = "MetricData.member.3"
D31 = f"{M3}.Dimensions.member.1"
DISTRIBUTION = {"Value": None, "Values": [1.0, 2.0], "Counts": [3.0, 4.0]}
STATISTICS = {"SampleCount": 2.0, "Sum": 3.0, "Minimum": 1.0, "Maximum": 2.0}
LONG = "v" * 1024

# (case, namespace or None to leave it out, MetricData, expected code, text the message must contain)
REFUSED = [
    ("Namespace missing", None, [datum()], "MissingParameter", "The parameter Namespace is required."),
    ("Namespace empty", "", [datum()], "InvalidParameterValue", "for parameter Namespace is invalid"),
    ("Namespace of 256 characters", "N" * 256, [datum()], "InvalidParameterValue", "parameter Namespace"),
    ("Namespace reserved AWS/", f"AWS/{RUN}", [datum()], "InvalidParameterValue", "parameter Namespace"),
    ("Namespace with a control character", f"Bridge{RUN}/a\x01b", [datum()], "InvalidParameterValue", "Namespace"),
    ("Namespace not ASCII", f"Bridge{RUN}/Ünïcode", [datum()], "InvalidParameterValue", "parameter Namespace"),
    ("Namespace starting with a colon", f":Bridge{RUN}", [datum()], "InvalidParameterValue", "parameter Namespace"),
    ("1,001 datums", "ok", [datum(Value=float(i)) for i in range(1001)], "InvalidParameterValue",
     "The collection MetricData must not have a size greater than 1000."),
    ("MetricName missing", "ok", third(MetricName=None), "MissingParameter",
     f"The parameter {M3}.MetricName is required."),
    ("MetricName empty", "ok", third(MetricName=""), "InvalidParameterValue", f"parameter {M3}.MetricName is invalid"),
    ("MetricName of 256 characters", "ok", third(MetricName="m" * 256), "InvalidParameterValue", f"{M3}.MetricName"),
    ("31 dimensions", "ok", third(Dimensions=dims(*[(f"d{i}", "v") for i in range(31)])), "InvalidParameterValue",
     f"The collection {M3}.Dimensions must not have a size greater than 30."),
    ("dimension Name missing", "ok", third(Dimensions=[{"Value": "v"}]), "MissingParameter", f"{D31}.Name is required"),
    ("dimension Value missing", "ok", third(Dimensions=[{"Name": "n"}]), "MissingParameter",
     f"{D31}.Value is required"),
    ("dimension Name empty", "ok", third(Dimensions=dims(("", "v"))), "InvalidParameterValue",
     f"{D31}.Name is invalid"),
    ("dimension Name of 256 characters", "ok", third(Dimensions=dims(("n" * 256, "v"))), "InvalidParameterValue",
     f"{D31}.Name is invalid"),
    ("dimension Value empty", "ok", third(Dimensions=dims(("n", ""))), "InvalidParameterValue",
     f"The value  for parameter {D31}.Value is invalid."),
    ("dimension Value of 1,025 characters", "ok", third(Dimensions=dims(("n", LONG + "v"))), "InvalidParameterValue",
     f"{D31}.Value is invalid"),
    ("dimension Value not ASCII", "ok", third(Dimensions=dims(("n", "café"))), "InvalidParameterValue",
     f"{D31}.Value is invalid"),
    ("dimension Value with a control character", "ok", third(Dimensions=dims(("n", "a\tb"))), "InvalidParameterValue",
     f"{D31}.Value is invalid"),
    ("dimension Name only whitespace", "ok", third(Dimensions=dims(("   ", "v"))), "InvalidParameterValue",
     f"{D31}.Name is invalid"),
    ("dimension Value only whitespace", "ok", third(Dimensions=dims(("n", " "))), "InvalidParameterValue",
     f"{D31}.Value is invalid"),
    ("dimension Name with a control character", "ok", third(Dimensions=dims(("a\x7f", "v"))), "InvalidParameterValue",
     f"{D31}.Name is invalid"),
    ("dimension Name starting with a colon", "ok", third(Dimensions=dims((":n", "v"))), "InvalidParameterValue",
     f"{D31}.Name is invalid"),
    ("dimension Name repeated", "ok", third(Dimensions=dims(("n", "a"), ("m", "b"), ("n", "c"))),
     "InvalidParameterValue", f"{M3}.Dimensions.member.3.Name is invalid"),
    ("Value and Values", "ok", third(Values=[1.0]), "InvalidParameterCombination",
     f"The parameters {M3}.Value and {M3}.Values are mutually exclusive"),
    ("Value and StatisticValues", "ok", third(StatisticValues=STATISTICS), "InvalidParameterCombination",
     f"The parameters {M3}.Value and {M3}.StatisticValues are mutually exclusive"),
    ("Values and StatisticValues", "ok", third(Value=None, Values=[1.0], StatisticValues=STATISTICS),
     "InvalidParameterCombination", f"{M3}.Values and {M3}.StatisticValues are mutually exclusive"),
    ("151 Values", "ok", third(Value=None, Values=[float(i + 1) for i in range(151)]), "InvalidParameterValue",
     f"The collection {M3}.Values must not have a size greater than 150."),
    ("Counts not as many as Values", "ok", third(Value=None, Values=[1.0, 2.0], Counts=[1.0]),
     "InvalidParameterValue", f"The parameters {M3}.Values and {M3}.Counts must be of the same size"),
    ("Counts without Values", "ok", third(Counts=[1.0]), "InvalidParameterCombination", f"{M3}.Counts"),
    ("negative count", "ok", third(Value=None, Values=[1.0, 2.0], Counts=[1.0, -1.0]), "InvalidParameterValue",
     f"The value -1.0 for parameter {M3}.Counts.member.2 is invalid."),
    ("NaN count", "ok", third(Value=None, Values=[1.0], Counts=[math.nan]), "InvalidParameterValue",
     f"The value NaN for parameter {M3}.Counts.member.1 is invalid."),
    ("Value NaN", "ok", third(Value=math.nan), "InvalidParameterValue",
     f"The value NaN for parameter {M3}.Value is invalid."),
    ("Value +Infinity", "ok", third(Value=math.inf), "InvalidParameterValue",
     f"The value Infinity for parameter {M3}.Value is invalid."),
    ("Values -Infinity", "ok", third(Value=None, Values=[1.0, -math.inf]), "InvalidParameterValue",
     f"The value -Infinity for parameter {M3}.Values.member.2 is invalid."),
    ("Value too small", "ok", third(Value=1e-200), "InvalidParameterValue", f"parameter {M3}.Value is invalid"),
    ("Value too large", "ok", third(Value=-1e200), "InvalidParameterValue", f"parameter {M3}.Value is invalid"),
    ("Values too large", "ok", third(Value=None, Values=[2e108]), "InvalidParameterValue", f"{M3}.Values.member.1"),
    ("StatisticValues without Maximum", "ok", third(Value=None, StatisticValues={**STATISTICS, "Maximum": None}),
     "MissingParameter", f"The parameter {M3}.StatisticValues.Maximum is required."),
    ("StatisticValues Sum NaN", "ok", third(Value=None, StatisticValues={**STATISTICS, "Sum": math.nan}),
     "InvalidParameterValue", f"{M3}.StatisticValues.Sum is invalid"),
    ("StorageResolution 5", "ok", third(StorageResolution=5), "InvalidParameterValue",
     f"The value 5 for parameter {M3}.StorageResolution is invalid."),
    ("Timestamp 15 days ago", "ok", third(Timestamp=Timestamp(NOW - 15 * 86400)), "InvalidParameterValue",
     f"for parameter {M3}.Timestamp is invalid. It must be no more than two weeks in the past."),
    ("Timestamp 3 hours ahead", "ok", third(Timestamp=Timestamp(NOW + 3 * 3600)), "InvalidParameterValue",
     f"for parameter {M3}.Timestamp is invalid. It must be no more than two hours in the future."),
    ("Unit not a StandardUnit", "ok", third(Unit="Millis"), "InvalidParameterValue",
     f"The value Millis for parameter {M3}.Unit is invalid."),
    # 40 datums of 30 dimensions with 1,024-character values: about 1.26 MB of CBOR, about 30 KB gzipped.
    ("body over 1 MB once gunzipped", "ok",
     [datum(Dimensions=dims(*[(f"d{j}", LONG) for j in range(30)])) for _ in range(40)], "RequestEntityTooLarge",
     "exceeded 1048576 bytes"),
]

# (case, MetricData) that keep every rule, at their limits.
ACCEPTED = [
    ("one datum", [datum()]),
    ("Values and Counts, 150 values", [datum(Value=None, Values=[float(i + 1) for i in range(150)],
                                             Counts=[1.0] * 150)]),
    ("Values without Counts", [datum(Value=None, Values=[1.0, 2.5])]),
    ("StatisticValues", [datum(Value=None, StatisticValues=STATISTICS, Unit="Count")]),
    ("Value 0 and limits of magnitude", [datum(Value=0.0), datum(Value=8.6e-109), datum(Value=-1.17e108)]),
    ("30 dimensions of 255/1,024 characters", [datum(Dimensions=dims(*[(f"{j:02}" + "n" * 253, LONG)
                                                                        for j in range(30)]))]),
    ("Timestamp 13 days ago and 1 hour ahead", [datum(Timestamp=Timestamp(NOW - 13 * 86400)),
                                                datum(Timestamp=Timestamp(NOW + 3600))]),
    ("no Timestamp, Unit, StorageResolution 1", [datum(Timestamp=None, Unit=None, StorageResolution=1)]),
    ("1,000 datums, gzipped", [datum(Value=float(i + 1)) for i in range(1000)]),
    ("MetricName of 255 characters", [datum(MetricName="m" * 255)]),
]


def run(bridge, moto):
    # Accepted: answered 200 with an empty CBOR map, captured, and in moto.
    for case, data in ACCEPTED:
        namespace = f"BridgeTest/{RUN}/{case}"
        status, headers, body = post(bridge, "PutMetricData", {"Namespace": namespace, "MetricData": data})
        check(f"accepted: {case}: 200", status == 200, f"{status} {body}")
        captured = get_json(f"{bridge}/captured?namespace={urllib.parse.quote(namespace, safe='')}")
        check(f"accepted: {case}: captured", len(captured) == 1 and len(captured[0]["MetricData"]) == len(data),
              f"{len(captured)} captured")
    namespace = f"BridgeTest/{RUN}/one datum"
    status, _, body = post(bridge, "ListMetrics", {"Namespace": namespace})
    names = [m["MetricName"] for m in (body or {}).get("Metrics", [])]
    check("accepted: moto has the metric (ListMetrics through the bridge)", names == ["meetingStartDurationMs"],
          f"{status} {body}")
    status, _, body = post(bridge, "PutMetricData", {"Namespace": f"BridgeTest/{RUN}/gzip-small",
                                                     "MetricData": [datum()]}, compress=True)
    check("accepted: a small gzipped body", status == 200, f"{status} {body}")

    # Refused: CloudWatch's answer on the wire, nothing forwarded or captured, the refusal listed by /rejected.
    refused_namespaces = set()
    for case, namespace, data, code, text in REFUSED:
        if namespace == "ok":
            namespace = f"BridgeTest/{RUN}/{case}"
        request = {"MetricData": data} if namespace is None else {"Namespace": namespace, "MetricData": data}
        status, headers, body = post(bridge, "PutMetricData", request)
        want_status = 413 if code == "RequestEntityTooLarge" else 400
        wire_ok = (
            status == want_status
            and headers.get("Content-Type") == "application/cbor"
            and headers.get("smithy-protocol") == "rpc-v2-cbor"
            and headers.get("x-amzn-query-error") == f"{code};Sender"
            and headers.get("x-amzn-RequestId")
            and isinstance(body, dict)
            and set(body) == {"__type", "message"}
            and body["__type"] == SHAPES[code]
        )
        check(f"refused: {case}: {want_status} {code}", wire_ok,
              f"{status} {headers.get('x-amzn-query-error')} {body}")
        message = body.get("message", "") if isinstance(body, dict) else ""
        check(f"refused: {case}: message names the field", text in message, f"{message!r} lacks {text!r}")
        query = f"?namespace={urllib.parse.quote(namespace, safe='')}" if namespace else ""
        captured = [r for r in get_json(f"{bridge}/captured{query}") if r.get("Namespace") == namespace]
        rejected = [r for r in get_json(f"{bridge}/rejected{query}") if r["message"] == message]
        check(f"refused: {case}: not captured", not captured, f"{len(captured)} captured")
        check(
            f"refused: {case}: listed by /rejected",
            len(rejected) == 1
            and rejected[0]["code"] == code
            and rejected[0]["status"] == want_status
            and rejected[0]["Namespace"] == namespace
            and rejected[0]["request"].get("Namespace") == namespace,
            f"{rejected}",
        )
        if namespace is not None and namespace.startswith("BridgeTest/"):
            refused_namespaces.add(namespace)
            status, _, body = post(bridge, "ListMetrics", {"Namespace": namespace})
            check(f"refused: {case}: not in moto", status == 200 and not body.get("Metrics"), f"{status} {body}")
    # A body that is not gzip, though it says so: 400 SerializationException, kept by /rejected (namespace unknown).
    call = urllib.request.Request(bridge + PATH + "PutMetricData", data=b"not gzip", method="POST",
                                  headers={"Content-Type": "application/cbor", "Content-Encoding": "gzip"})
    try:
        urllib.request.urlopen(call)
        status, headers, body = 200, {}, None
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, error.headers, cbor2.loads(error.read())
    check("refused: undecodable body: 400 SerializationException",
          status == 400 and headers.get("x-amzn-query-error") == "SerializationException;Sender"
          and body["__type"] == "SerializationException", f"{status} {body}")
    check("refused: undecodable body: listed by /rejected",
          any(r["code"] == "SerializationException" and r["request"] is None for r in get_json(f"{bridge}/rejected")))
    nan = get_json(f"{bridge}/rejected?namespace={urllib.parse.quote(f'BridgeTest/{RUN}/Value NaN', safe='')}")
    check("/rejected: NaN as a string in strict JSON", nan and nan[0]["request"]["MetricData"][2]["Value"] == "NaN",
          f"{nan}")

    # A request with one bad datum is refused whole: none of its good datums is captured either.
    everything = get_json(f"{bridge}/captured")
    check("/captured (all namespaces) holds no refused request",
          not any(r.get("Namespace") in refused_namespaces for r in everything), f"{len(everything)} captured")

    boto(bridge)


def boto(bridge):
    """The same through botocore's CloudWatch client (RPC v2 CBOR, awsQueryCompatible error parsing)."""
    try:
        import boto3
        import botocore.model
        from botocore.config import Config
        from botocore.exceptions import ClientError
    except ImportError:
        print("skip botocore checks: boto3 is not installed")
        return
    # botocore prefers awsJson where a service offers it; CloudWatch's model lists smithy-rpc-v2-cbor first, and the
    # Rust SDK speaks only that, so botocore is made to prefer it too.
    botocore.model.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS = ("smithy-rpc-v2-cbor",) + tuple(
        p for p in botocore.model.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS if p != "smithy-rpc-v2-cbor"
    )
    client = boto3.client(
        "cloudwatch", endpoint_url=bridge, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test", config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    protocol = client.meta.service_model.resolved_protocol
    check("botocore: speaks smithy-rpc-v2-cbor", protocol == "smithy-rpc-v2-cbor", protocol)
    sent = {}
    client.meta.events.register("before-send.cloudwatch.PutMetricData",
                                lambda request, **_: sent.update(request.headers))
    namespace = f"BridgeTest/{RUN}/botocore"
    good = {"MetricName": "m", "Value": 1.0, "Dimensions": [{"Name": "n", "Value": "v" * 100}]}
    client.put_metric_data(Namespace=namespace, MetricData=[good] * 200)
    check("botocore: 200 datums accepted, gzipped by botocore", sent.get("Content-Encoding") == b"gzip"
          or sent.get("Content-Encoding") == "gzip", f"{sent}")
    bad = {"MetricName": "m", "Value": 1.0, "Dimensions": [{"Name": "n", "Value": ""}]}
    for case, data, code, text in [
        ("empty dimension Value", [good, good, bad], "InvalidParameterValue", f"{D31}.Value is invalid"),
        ("Value and StatisticValues", [{**good, "StatisticValues": STATISTICS}], "InvalidParameterCombination",
         "mutually exclusive"),
        ("MetricName missing", [{"Value": 1.0}], "MissingParameter", "MetricData.member.1.MetricName is required"),
    ]:
        try:
            client.put_metric_data(Namespace=namespace, MetricData=data)
            check(f"botocore: {case}: refused", False, "accepted")
        except ClientError as error:
            e = error.response["Error"]
            check(f"botocore: {case}: {code}", e["Code"] == code and text in e["Message"]
                  and error.response["ResponseMetadata"]["HTTPStatusCode"] == 400, f"{error.response}")
    captured = get_json(f"{bridge}/captured?namespace={urllib.parse.quote(namespace, safe='')}")
    check("botocore: only the valid request captured", len(captured) == 1 and len(captured[0]["MetricData"]) == 200,
          f"{len(captured)}")


def main():
    moto = sys.argv[1].rstrip("/")
    bridge = subprocess.Popen([sys.executable, BRIDGE, moto], stdout=subprocess.PIPE, text=True)
    try:
        url = bridge.stdout.readline().strip().rsplit(" ", 1)[-1]
        print(f"bridge at {url}, moto at {moto}")
        run(url, moto)
    finally:
        bridge.terminate()
        bridge.wait(timeout=10)
    print(f"{len(failures)} failure(s)" if failures else "all passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
