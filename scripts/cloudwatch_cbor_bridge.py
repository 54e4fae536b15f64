"""Test-only bridge: lets the current AWS SDK for Rust talk CloudWatch to moto, and is strict about PutMetricData.

aws-sdk-cloudwatch (1.100 and later) speaks only Smithy RPC v2 CBOR; moto understands CloudWatch's awsJson 1.0.
This server takes `POST /service/GraniteServiceVersion20100801/operation/<Op>` with a CBOR body (gunzipped first when
`Content-Encoding: gzip`, as the SDK sends PutMetricData bodies of 10 KB and more), forwards it to moto as JSON
(`X-Amz-Target: GraniteServiceVersion20100801.<Op>`), and re-encodes moto's answer as CBOR, with timestamps as CBOR
tag 1. Usage: python cloudwatch_cbor_bridge.py MOTO_URL; it prints `Bridging on http://127.0.0.1:PORT`.

moto checks almost nothing of PutMetricData, so the bridge first checks each PutMetricData request against the rules of
the Amazon CloudWatch API Reference (`validate_put_metric_data`: namespace, datum count and request size, names,
dimensions, Value/Values/Counts/StatisticValues, timestamps within two weeks back and two hours ahead, unit, storage
resolution). A request that breaks one is answered as CloudWatch answers it over RPC v2 CBOR (awsQueryCompatible):
HTTP 400 (413 for a body over 1 MB), headers `x-amzn-query-error: <Code>;Sender`, `smithy-protocol: rpc-v2-cbor`,
`Content-Type: application/cbor` and `x-amzn-RequestId`, and a CBOR map `{"__type": "com.amazonaws.cloudwatch#<Shape>",
"message": ...}` naming the parameter, e.g. `MetricData.member.3.Dimensions.member.1.Value`. The SDK takes the error
code from `x-amzn-query-error`, so `err.code()` is CloudWatch's: InvalidParameterValue, InvalidParameterCombination,
MissingParameter or RequestEntityTooLarge. A refused request is neither forwarded nor captured.

moto cannot compute percentiles, so the bridge also keeps every PutMetricData request it forwarded (as JSON):
`GET /captured?namespace=NS` returns them, for tests to check the published Values/Counts themselves.
`GET /rejected?namespace=NS` returns the PutMetricData requests it refused, each as
`{"Namespace", "status", "code", "message", "request"}` (`request` null for an undecodable body; NaN and infinities
in it as the strings "NaN", "Infinity", "-Infinity"), for tests to check that a request was sent and refused.
"""

import base64
import datetime
import gzip
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cbor2

TARGET_PREFIX = "GraniteServiceVersion20100801"
PATH_PREFIX = f"/service/{TARGET_PREFIX}/operation/"

# PutMetricData's limits (Amazon CloudWatch API Reference, PutMetricData, and the MetricDatum, Dimension and
# StatisticSet data types). CloudWatch counts a KB as 1,024 bytes: its 413 answers read "Request size 47947 exceeded
# 40960 bytes" when the limit was documented as 40 KB.
MAX_REQUEST_BYTES = 1_048_576
MAX_DATUMS = 1000
MAX_DIMENSIONS = 30
MAX_VALUES = 150
MIN_MAGNITUDE = 8.515920e-109  # about 2^-359
MAX_MAGNITUDE = 1.174271e108  # about 2^359
MAX_AGE_SECONDS = 14 * 24 * 3600
MAX_AHEAD_SECONDS = 2 * 3600
STANDARD_UNITS = frozenset(
    "Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes Bits Kilobits Megabits "
    "Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second Megabytes/Second Gigabytes/Second "
    "Terabytes/Second Bits/Second Kilobits/Second Megabits/Second Gigabits/Second Terabits/Second Count/Second "
    "None".split()
)

# How CloudWatch answers each error code over RPC v2 CBOR: HTTP status and the `__type` of the body (the Smithy shape
# ID). The code itself goes in `x-amzn-query-error` (the awsQueryError code of the shape), which is what the SDKs read.
ERRORS = {
    "InvalidParameterValue": (400, "com.amazonaws.cloudwatch#InvalidParameterValueException"),
    "InvalidParameterCombination": (400, "com.amazonaws.cloudwatch#InvalidParameterCombinationException"),
    "MissingParameter": (400, "com.amazonaws.cloudwatch#MissingRequiredParameterException"),
    # Not a modeled error of PutMetricData: the SDK hands it over as an unhandled error with this code.
    "RequestEntityTooLarge": (413, "RequestEntityTooLarge"),
    # An undecodable body (not a CloudWatch rule, but the bridge answers rather than dropping the connection).
    "SerializationException": (400, "SerializationException"),
}


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


def json_safe(value):
    """A request as strict JSON: NaN and infinities (which a refused request may hold) as strings."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


# --- PutMetricData validation -----------------------------------------------------------------------------------


def shown(value):
    """A value as an error message quotes it: long strings cut, control and non-ASCII characters escaped."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return json.dumps(json_safe(value))[:100]
    if isinstance(value, float):
        return json_safe(value) if not math.isfinite(value) else repr(value)
    if isinstance(value, str):
        text = value.encode("unicode_escape").decode("ascii")
        return text if len(text) <= 100 else text[:97] + "..."
    return str(value)


def invalid(parameter, value, why):
    return "InvalidParameterValue", f"The value {shown(value)} for parameter {parameter} is invalid. {why}"


def missing(parameter):
    return "MissingParameter", f"The parameter {parameter} is required."


def too_many(collection, limit):
    return "InvalidParameterValue", f"The collection {collection} must not have a size greater than {limit}."


def text_problem(value, max_len, *, ascii_only=False, no_control=False, not_blank=False, no_leading_colon=False):
    """Why a string parameter breaks its constraints, or None."""
    if not isinstance(value, str):
        return "It must be a string."
    if not 1 <= len(value) <= max_len:
        return f"It must be 1 to {max_len} characters long (it has {len(value)})."
    if ascii_only and not value.isascii():
        return "It must contain only ASCII characters."
    if no_control and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "ASCII control characters are not supported."
    if not_blank and not value.strip():
        return "It must include at least one non-whitespace character."
    if no_leading_colon and value.startswith(":"):
        return "It must not start with a colon (:)."
    return None


def iso(timestamp):
    """Epoch seconds as an ISO 8601 UTC time, for messages."""
    try:
        return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return timestamp


def number_problem(value):
    """Why a metric value breaks CloudWatch's range, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "It must be a number."
    if not math.isfinite(value):
        return "Special values (NaN, +Infinity, -Infinity) are not supported."
    if value != 0 and not MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE:
        return f"Its magnitude must be 0 or between {MIN_MAGNITUDE:e} and {MAX_MAGNITUDE:e}."
    return None


def validate_put_metric_data(request, size, now):
    """The first rule of PutMetricData that `request` (the decoded body, timestamps as epoch seconds, `size` bytes
    once gunzipped) breaks at time `now`, as (error code, message); None if it keeps them all.

    Each rule cites the Amazon CloudWatch API Reference, PutMetricData (the action and its MetricDatum, Dimension and
    StatisticSet data types); the three the reference implies rather than states (one of Value/Values/StatisticValues,
    no repeated dimension name, no negative count) say so. Members are numbered from 1, as CloudWatch numbers them.
    """
    # Amazon CloudWatch API Reference, PutMetricData: "Each PutMetricData request is limited to 1 MB in size for HTTP
    # POST requests. You can send a payload compressed by gzip." Counted here on the body once gunzipped; CloudWatch
    # answers HTTP 413 RequestEntityTooLarge, "Request size N exceeded L bytes".
    if size > MAX_REQUEST_BYTES:
        return "RequestEntityTooLarge", f"Request size {size} exceeded {MAX_REQUEST_BYTES} bytes"

    # Amazon CloudWatch API Reference, PutMetricData: Namespace is required, 1-255 characters, pattern [^:].*, ASCII
    # characters except control characters, and not beginning with "AWS/" (reserved for AWS services).
    namespace = request.get("Namespace")
    if namespace is None:
        return missing("Namespace")
    why = text_problem(namespace, 255, ascii_only=True, no_control=True, no_leading_colon=True)
    if why:
        return invalid("Namespace", namespace, why)
    if namespace.startswith("AWS/"):
        return invalid("Namespace", namespace, 'Namespaces that begin with "AWS/" are reserved for AWS services.')

    # Amazon CloudWatch API Reference, PutMetricData: MetricData "can include no more than 1000 metrics per call"; the
    # limit is the sum of the MetricData and EntityMetricData metrics.
    collections = [("MetricData", request.get("MetricData"))]
    for i, entity in enumerate(request.get("EntityMetricData") or [], 1):
        items = entity.get("MetricData") if isinstance(entity, dict) else None
        collections.append((f"EntityMetricData.member.{i}.MetricData", items))
    datums = []
    for collection, items in collections:
        if items is None:
            continue
        if not isinstance(items, list):
            return invalid(collection, items, "It must be a list of MetricDatum.")
        datums += [(f"{collection}.member.{j}", datum) for j, datum in enumerate(items, 1)]
    if len(datums) > MAX_DATUMS:
        return too_many("MetricData", MAX_DATUMS)

    for at, datum in datums:
        if not isinstance(datum, dict):
            return invalid(at, datum, "It must be a MetricDatum.")

        # Amazon CloudWatch API Reference, PutMetricData (MetricDatum): MetricName is required, 1-255 characters.
        name = datum.get("MetricName")
        if name is None:
            return missing(f"{at}.MetricName")
        why = text_problem(name, 255)
        if why:
            return invalid(f"{at}.MetricName", name, why)

        # Amazon CloudWatch API Reference, PutMetricData: "You can use up to 30 dimensions per metric." Dimension:
        # Name (required) 1-255 characters, Value (required) 1-1,024 characters; both ASCII only, without control
        # characters, with at least one non-whitespace character; a name cannot start with a colon. A dimension name
        # may be given once per datum (a metric is identified by its dimension names and values).
        dimensions = datum.get("Dimensions")
        if dimensions is not None:
            if not isinstance(dimensions, list):
                return invalid(f"{at}.Dimensions", dimensions, "It must be a list of Dimension.")
            if len(dimensions) > MAX_DIMENSIONS:
                return too_many(f"{at}.Dimensions", MAX_DIMENSIONS)
            seen = set()
            for k, dimension in enumerate(dimensions, 1):
                dim = f"{at}.Dimensions.member.{k}"
                if not isinstance(dimension, dict):
                    return invalid(dim, dimension, "It must be a Dimension.")
                for field, max_len in (("Name", 255), ("Value", 1024)):
                    value = dimension.get(field)
                    if value is None:
                        return missing(f"{dim}.{field}")
                    why = text_problem(
                        value, max_len, ascii_only=True, no_control=True, not_blank=True,
                        no_leading_colon=field == "Name",
                    )
                    if why:
                        return invalid(f"{dim}.{field}", value, why)
                if dimension["Name"] in seen:
                    why = "A dimension name may appear only once in a datum."
                    return invalid(f"{dim}.Name", dimension["Name"], why)
                seen.add(dimension["Name"])

        # Amazon CloudWatch API Reference, PutMetricData: "You can specify time stamps that are as much as two weeks
        # before the current date, and as much as 2 hours after the current date and time."
        timestamp = datum.get("Timestamp")
        if timestamp is not None:
            if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
                return invalid(f"{at}.Timestamp", timestamp, "It must be a timestamp.")
            if timestamp < now - MAX_AGE_SECONDS:
                return invalid(f"{at}.Timestamp", iso(timestamp), "It must be no more than two weeks in the past.")
            if timestamp > now + MAX_AHEAD_SECONDS:
                return invalid(f"{at}.Timestamp", iso(timestamp), "It must be no more than two hours in the future.")

        # Amazon CloudWatch API Reference, PutMetricData: a datum publishes "either individual values in the Value
        # field, or arrays of values ... by using the Values and Counts fields", or a StatisticSet in StatisticValues:
        # one of the three. CloudWatch refuses two with InvalidParameterCombination ("... are mutually exclusive").
        given = [field for field in ("Value", "Values", "StatisticValues") if datum.get(field) is not None]
        if len(given) > 1:
            return (
                "InvalidParameterCombination",
                f"The parameters {at}.{given[0]} and {at}.{given[1]} are mutually exclusive "
                "and you have specified both.",
            )

        # Amazon CloudWatch API Reference, PutMetricData: "CloudWatch rejects values that are either too small or too
        # large" (8.515920e-109 to 1.174271e+108 in magnitude, or 0; today's text says -2^360 to 2^360), and
        # "special values (for example, NaN, +Infinity, -Infinity) are not supported".
        if datum.get("Value") is not None:
            why = number_problem(datum["Value"])
            if why:
                return invalid(f"{at}.Value", datum["Value"], why)

        # Amazon CloudWatch API Reference, PutMetricData: "publish up to 150 values per metric" (Values), under the
        # same range rules; MetricDatum, Counts: "If you include a Counts array, it must include the same amount of
        # values as the Values array" (so no Counts without Values); a count (a number of occurrences) cannot be
        # negative.
        values, counts = datum.get("Values"), datum.get("Counts")
        if values is not None:
            if not isinstance(values, list):
                return invalid(f"{at}.Values", values, "It must be a list of numbers.")
            if len(values) > MAX_VALUES:
                return too_many(f"{at}.Values", MAX_VALUES)
            for k, value in enumerate(values, 1):
                why = number_problem(value)
                if why:
                    return invalid(f"{at}.Values.member.{k}", value, why)
        if counts is not None:
            if values is None:
                return (
                    "InvalidParameterCombination",
                    f"The parameter {at}.Counts can only be specified together with {at}.Values.",
                )
            if not isinstance(counts, list):
                return invalid(f"{at}.Counts", counts, "It must be a list of numbers.")
            if len(counts) != len(values):
                return (
                    "InvalidParameterValue",
                    f"The parameters {at}.Values and {at}.Counts must be of the same size "
                    f"({len(values)} values, {len(counts)} counts).",
                )
            for k, count in enumerate(counts, 1):
                why = number_problem(count) or ("A count cannot be negative." if count < 0 else None)
                if why:
                    return invalid(f"{at}.Counts.member.{k}", count, why)

        # Amazon CloudWatch API Reference, PutMetricData (StatisticSet): SampleCount, Sum, Minimum and Maximum are all
        # required, and are values under the same range rules.
        statistics = datum.get("StatisticValues")
        if statistics is not None:
            if not isinstance(statistics, dict):
                return invalid(f"{at}.StatisticValues", statistics, "It must be a StatisticSet.")
            for field in ("SampleCount", "Sum", "Minimum", "Maximum"):
                if statistics.get(field) is None:
                    return missing(f"{at}.StatisticValues.{field}")
                why = number_problem(statistics[field])
                if why:
                    return invalid(f"{at}.StatisticValues.{field}", statistics[field], why)

        # Amazon CloudWatch API Reference, PutMetricData (MetricDatum): Unit is one of the StandardUnit values.
        unit = datum.get("Unit")
        if unit is not None and unit not in STANDARD_UNITS:
            return invalid(f"{at}.Unit", unit, "It must be one of CloudWatch's standard units (StandardUnit).")

        # Amazon CloudWatch API Reference, PutMetricData (MetricDatum): StorageResolution is 1 (high resolution) or
        # 60 (standard resolution).
        resolution = datum.get("StorageResolution")
        if resolution is not None and (isinstance(resolution, bool) or resolution not in (1, 60)):
            return invalid(f"{at}.StorageResolution", resolution, "It must be 1 or 60.")
    return None


# --- HTTP ---------------------------------------------------------------------------------------------------------


class Bridge(BaseHTTPRequestHandler):
    moto = ""
    captured = []
    rejected = []
    lock = threading.Lock()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        kept = {"/captured": Bridge.captured, "/rejected": Bridge.rejected}.get(url.path)
        if kept is None:
            self.send_error(404)
            return
        namespace = urllib.parse.parse_qs(url.query).get("namespace", [None])[0]
        with Bridge.lock:
            requests = [r for r in kept if namespace is None or r.get("Namespace") == namespace]
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
        try:
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            request = to_json(cbor2.loads(body)) if body else {}
        except (OSError, EOFError, zlib.error, ValueError, cbor2.CBORDecodeError) as error:
            self.refuse(operation, None, "SerializationException", f"The request body could not be decoded: {error}")
            return
        if operation == "PutMetricData":
            violation = validate_put_metric_data(request, len(body), time.time())
            if violation:
                self.refuse(operation, request, *violation)
                return
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

    def refuse(self, operation, request, code, message):
        """Answers an error as CloudWatch does over RPC v2 CBOR, keeping a refused PutMetricData for /rejected."""
        status, shape = ERRORS[code]
        if operation == "PutMetricData":
            namespace = request.get("Namespace") if isinstance(request, dict) else None
            record = {"Namespace": namespace, "status": status, "code": code, "message": message}
            record["request"] = json_safe(request)
            with Bridge.lock:
                Bridge.rejected.append(record)
        self.reply(
            status,
            {"__type": shape, "message": message},
            {"x-amzn-query-error": f"{code};Sender", "x-amzn-RequestId": str(uuid.uuid4())},
        )

    def reply(self, status, answer, headers=None):
        data = cbor2.dumps(answer)
        self.send_response(status)
        self.send_header("Content-Type", "application/cbor")
        self.send_header("smithy-protocol", "rpc-v2-cbor")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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
