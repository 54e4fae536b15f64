"""Checks scripts/fault_proxy.py end to end: boto3 (and raw HTTP) through the proxy to moto, with and without faults.

Usage: python test_fault_proxy.py PROXY_URL   (the proxy must sit in front of a moto server; needs boto3)
Prints one line per check and closes with `N passed, N failed`; exits non-zero when a check failed.
"""

import base64
import hashlib
import http.client
import json
import os
import socket
import struct
import sys
import time
import traceback
import urllib.parse
import uuid
import zlib

import boto3
import botocore.exceptions
from botocore.config import Config

PROXY = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else None
RUN = uuid.uuid4().hex[:8]  # names unique to this run, so the script can run again against the same moto
MiB = 1 << 20
# moto routes a request without an X-Amz-Target by the service in the SigV4 credential scope (it checks no signature).
S3_AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, "
           "Signature=0000")


# --- helpers --------------------------------------------------------------------------------------------------------

def control(method, path="", body=None):
    """Calls the proxy's control API; returns (status, decoded JSON)."""
    url = urllib.parse.urlsplit(PROXY)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, "/_faults" + path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, json.loads(payload) if payload else None


def add_rule(**rule):
    status, answer = control("POST", "", rule)
    assert status == 201, (status, answer)
    return answer["id"]


def clear_rules():
    control("DELETE")


def stats():
    return control("GET", "/stats")[1]


def client(service, **config):
    return boto3.client(
        service,
        endpoint_url=PROXY,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # total_max_attempts=1: one attempt, no retry. (`max_attempts` counts retries after the first attempt.)
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"},
                      **config),
    )


def error_of(call, *args, **kwargs):
    """Runs a boto3 call that must fail with a service error; returns (code, HTTP status, message)."""
    try:
        call(*args, **kwargs)
    except botocore.exceptions.ClientError as error:
        meta = error.response.get("ResponseMetadata", {})
        return error.response["Error"].get("Code"), meta.get("HTTPStatusCode"), error.response["Error"].get("Message")
    raise AssertionError(f"{call.__name__} succeeded; a service error was expected")


def check_eq(actual, expected, what):
    assert actual == expected, f"{what}: {actual!r}, expected {expected!r}"


def read_stream(kinesis, stream):
    """Every record of every shard of the stream, from TRIM_HORIZON: {data: (shard, sequence number)}."""
    found = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                assert record["Data"] not in found, f"duplicate record {record['Data']!r}"
                found[record["Data"]] = (shard["ShardId"], record["SequenceNumber"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return found


def make_stream(kinesis, shards=2):
    name = f"fp-{RUN}-{uuid.uuid4().hex[:6]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return name


def cbor_decode(data):
    """A tiny CBOR reader: definite and indefinite text/byte strings, integers, arrays, maps, simple values."""
    def item(i):
        initial = data[i]
        major, info = initial >> 5, initial & 31
        i += 1
        if major == 7:
            if info in (20, 21, 22):
                return {20: False, 21: True, 22: None}[info], i
            if info == 27:
                return struct.unpack(">d", data[i:i + 8])[0], i + 8
            raise ValueError(f"simple value {info}")
        if info == 31:  # indefinite length
            if major in (2, 3):
                parts = []
                while data[i] != 0xFF:
                    part, i = item(i)
                    parts.append(part)
                return ("" if major == 3 else b"").join(parts), i + 1
            if major == 4:
                out = []
                while data[i] != 0xFF:
                    value, i = item(i)
                    out.append(value)
                return out, i + 1
            if major == 5:
                out = {}
                while data[i] != 0xFF:
                    key, i = item(i)
                    out[key], i = item(i)
                return out, i + 1
            raise ValueError("bad indefinite item")
        if info < 24:
            n = info
        else:
            width = {24: 1, 25: 2, 26: 4, 27: 8}[info]
            n, i = int.from_bytes(data[i:i + width], "big"), i + width
        if major == 0:
            return n, i
        if major == 1:
            return -1 - n, i
        if major == 2:
            return data[i:i + n], i + n
        if major == 3:
            return data[i:i + n].decode("utf-8"), i + n
        if major == 4:
            out = []
            for _ in range(n):
                value, i = item(i)
                out.append(value)
            return out, i
        if major == 5:
            out = {}
            for _ in range(n):
                key, i = item(i)
                out[key], i = item(i)
            return out, i
        raise ValueError(f"major type {major}")

    value, end = item(0)
    assert end == len(data), "trailing bytes after the CBOR item"
    return value


def raw_connection():
    url = urllib.parse.urlsplit(PROXY)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30)


# --- checks ---------------------------------------------------------------------------------------------------------

CHECKS = []
EXPECTED = {"throttle": 0, "partial": 0, "error500": 0, "latency": 0, "reset": 0, "entries_failed": 0}


def check(function):
    CHECKS.append(function)
    return function


@check
def passthrough_kinesis():
    kinesis = client("kinesis")
    stream = make_stream(kinesis)
    kinesis.put_record(StreamName=stream, Data=b"one", PartitionKey="a")
    answer = kinesis.put_records(StreamName=stream, Records=[
        {"Data": f"rec-{i}".encode(), "PartitionKey": f"pk-{i}"} for i in range(20)])
    check_eq(answer["FailedRecordCount"], 0, "FailedRecordCount")
    found = read_stream(kinesis, stream)
    check_eq(set(found), {b"one"} | {f"rec-{i}".encode() for i in range(20)}, "records read back")


@check
def passthrough_dynamodb():
    dynamodb = client("dynamodb")
    table = f"fp-{RUN}"
    dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "k1"}, "n": {"N": "1"}})
    dynamodb.update_item(TableName=table, Key={"pk": {"S": "k1"}}, UpdateExpression="SET n = n + :one",
                         ExpressionAttributeValues={":one": {"N": "1"}})
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "k1"}}, ConsistentRead=True)["Item"]
    check_eq(item["n"], {"N": "2"}, "updated item")


@check
def passthrough_logs():
    logs = client("logs")
    group, stream = f"/fp/{RUN}", "s1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": f"m{i}"} for i in range(5)])
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    check_eq([e["message"] for e in events], [f"m{i}" for i in range(5)], "log events")


def bucket():
    name = f"fp-{RUN}"
    s3 = client("s3")
    try:
        s3.create_bucket(Bucket=name)
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return name


@check
def passthrough_s3():
    s3 = client("s3")
    name = bucket()
    s3.put_object(Bucket=name, Key="small.txt", Body=b"hello")
    check_eq(s3.get_object(Bucket=name, Key="small.txt")["Body"].read(), b"hello", "small object")
    big = os.urandom(3 * MiB + 17)  # over the proxy's 1 MiB buffering limit: streamed
    s3.put_object(Bucket=name, Key="big.bin", Body=big)
    got = s3.get_object(Bucket=name, Key="big.bin")["Body"].read()
    check_eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(big).hexdigest(), "3 MiB object")
    check_eq(s3.head_object(Bucket=name, Key="big.bin")["ContentLength"], len(big), "HeadObject length")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]]
    assert {"small.txt", "big.bin"} <= set(keys), keys
    # ~11 MiB as a multipart upload: 5 MiB + 5 MiB + 1 MiB parts.
    data = os.urandom(11 * MiB + 123)
    upload = s3.create_multipart_upload(Bucket=name, Key="multi.bin")["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MiB), start=1):
        etag = s3.upload_part(Bucket=name, Key="multi.bin", UploadId=upload, PartNumber=number,
                              Body=data[start:start + 5 * MiB])["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=name, Key="multi.bin", UploadId=upload, MultipartUpload={"Parts": parts})
    got = s3.get_object(Bucket=name, Key="multi.bin")["Body"].read()
    check_eq(len(got), len(data), "multipart length")
    check_eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest(), "multipart content")
    deleted = s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "small.txt"}, {"Key": "big.bin"}]})
    check_eq(sorted(d["Key"] for d in deleted["Deleted"]), ["big.bin", "small.txt"], "DeleteObjects")
    by_op = {(r["service"], r["operation"]) for r in stats()["by_operation"]}
    for op in ("PutObject", "GetObject", "HeadObject", "ListObjectsV2", "CreateMultipartUpload", "UploadPart",
               "CompleteMultipartUpload", "DeleteObjects", "CreateBucket"):
        assert ("s3", op) in by_op, f"S3 {op} not identified: {sorted(by_op)}"


@check
def passthrough_s3_chunked_and_aws_chunked():
    name = bucket()
    payload = os.urandom(200_000)
    # Transfer-Encoding: chunked, several chunks of different sizes. (No chunk extensions: the proxy passes them on,
    # but moto's server, werkzeug, answers 500 to them.)
    conn = raw_connection()
    conn.putrequest("PUT", f"/{name}/chunked.bin")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Authorization", S3_AUTH)
    conn.endheaders()
    for start in range(0, len(payload), 70_000):
        piece = payload[start:start + 70_000]
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    response.read()
    check_eq(response.status, 200, "chunked PUT status")
    s3 = client("s3")
    check_eq(s3.get_object(Bucket=name, Key="chunked.bin")["Body"].read(), payload, "chunked PUT content")
    # Content-Encoding: aws-chunked (what the AWS SDKs send with trailing checksums), framed by Content-Length.
    data = b"aws-chunked payload " * 1000
    crc = base64.b64encode(struct.pack(">I", zlib.crc32(data))).decode()
    body = b"%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % (len(data), data, crc.encode())
    conn.request("PUT", f"/{name}/aws-chunked.bin", body=body, headers={
        "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-trailer": "x-amz-checksum-crc32",
        "Authorization": S3_AUTH})
    response = conn.getresponse()
    response.read()
    check_eq(response.status, 200, "aws-chunked PUT status")
    conn.close()
    check_eq(s3.get_object(Bucket=name, Key="aws-chunked.bin")["Body"].read(), data, "aws-chunked PUT content")


@check
def keep_alive_across_faults():
    """One client connection: a forwarded GET, a throttled PUT with a body, then a GET again on the same socket."""
    name = bucket()
    client("s3").put_object(Bucket=name, Key="ka.txt", Body=b"kept alive")
    rule = add_rule(service="s3", operation="PutObject", mode="throttle")
    conn = raw_connection()
    conn.request("GET", f"/{name}/ka.txt", headers={"Authorization": S3_AUTH})
    first = conn.getresponse()
    check_eq(first.read(), b"kept alive", "first GET")
    sock = conn.sock
    conn.request("PUT", f"/{name}/ka2.txt", body=b"x" * 100_000, headers={"Authorization": S3_AUTH})
    throttled = conn.getresponse()
    body = throttled.read()
    check_eq(throttled.status, 503, "throttled PUT status")
    assert b"<Code>SlowDown</Code>" in body, body
    conn.request("GET", f"/{name}/ka.txt", headers={"Authorization": S3_AUTH})
    again = conn.getresponse()
    check_eq(again.read(), b"kept alive", "GET after the throttled PUT")
    assert conn.sock is sock, "the connection was not kept alive"
    conn.close()
    EXPECTED["throttle"] += 1
    control("DELETE", f"/{rule}")


@check
def throttle_per_service():
    kinesis, dynamodb, logs, s3 = client("kinesis"), client("dynamodb"), client("logs"), client("s3")
    stream = make_stream(kinesis, shards=1)
    add_rule(service="kinesis", operation="PutRecords", mode="throttle")
    code, status, message = error_of(kinesis.put_records, StreamName=stream,
                                     Records=[{"Data": b"t", "PartitionKey": "p"}])
    check_eq((code, status), ("ProvisionedThroughputExceededException", 400), "Kinesis throttle")
    assert message.startswith("Rate exceeded for shard ") and stream in message, message
    kinesis.put_record(StreamName=stream, Data=b"other op", PartitionKey="p")  # another operation: not throttled
    check_eq(set(read_stream(kinesis, stream)), {b"other op"}, "the throttled PutRecords stored nothing")
    clear_rules()

    table = f"fp-{RUN}"
    add_rule(service="dynamodb", operation="PutItem", mode="throttle", count=1)
    add_rule(service="dynamodb", operation="PutItem", mode="throttle", error_code="ThrottlingException", count=1)
    code, status, _ = error_of(dynamodb.put_item, TableName=table, Item={"pk": {"S": "throttled"}})
    check_eq((code, status), ("ProvisionedThroughputExceededException", 400), "DynamoDB throttle")
    code, status, _ = error_of(dynamodb.put_item, TableName=table, Item={"pk": {"S": "throttled"}})
    check_eq((code, status), ("ThrottlingException", 400), "DynamoDB ThrottlingException")
    assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": "throttled"}}), "throttled item stored"
    clear_rules()

    add_rule(service="logs", mode="throttle")
    code, status, _ = error_of(logs.put_log_events, logGroupName=f"/fp/{RUN}", logStreamName="s1",
                               logEvents=[{"timestamp": int(time.time() * 1000), "message": "throttled"}])
    check_eq((code, status), ("ThrottlingException", 400), "Logs throttle")
    clear_rules()

    name = bucket()
    add_rule(service="s3", operation="PutObject", mode="throttle")
    code, status, message = error_of(s3.put_object, Bucket=name, Key="throttled.txt", Body=b"x" * 5000)
    check_eq((code, status), ("SlowDown", 503), "S3 throttle")
    clear_rules()
    code, status, _ = error_of(s3.head_object, Bucket=name, Key="throttled.txt")
    check_eq(status, 404, "the throttled PutObject stored nothing")
    EXPECTED["throttle"] += 5


@check
def throttle_cloudwatch_cbor():
    add_rule(service="cloudwatch", operation="PutMetricData", mode="throttle")
    request = bytes([0xA1, 0x69]) + b"Namespace" + bytes([0x62]) + b"fp"  # {"Namespace": "fp"}
    conn = raw_connection()
    conn.request("POST", "/service/GraniteServiceVersion20100801/operation/PutMetricData", body=request, headers={
        "Content-Type": "application/cbor", "Accept": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    check_eq(response.status, 400, "CloudWatch throttle status")
    check_eq(response.getheader("Content-Type"), "application/cbor", "Content-Type")
    check_eq(response.getheader("smithy-protocol"), "rpc-v2-cbor", "smithy-protocol")
    check_eq(response.getheader("x-amzn-query-error"), "Throttling;Sender", "x-amzn-query-error")
    expected = (bytes([0xA2, 0x66]) + b"__type" + bytes([0x6A]) + b"Throttling"
                + bytes([0x67]) + b"message" + bytes([0x6D]) + b"Rate exceeded")
    check_eq(body, expected, "CBOR body bytes")
    check_eq(cbor_decode(body), {"__type": "Throttling", "message": "Rate exceeded"}, "CBOR body")
    clear_rules()
    add_rule(service="cloudwatch", mode="error500")
    conn = raw_connection()
    conn.request("POST", "/service/GraniteServiceVersion20100801/operation/ListMetrics", body=b"\xa0", headers={
        "Content-Type": "application/cbor", "Accept": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    check_eq(response.status, 500, "CloudWatch 500 status")
    check_eq(response.getheader("x-amzn-query-error"), "InternalServiceError;Receiver", "x-amzn-query-error")
    check_eq(cbor_decode(body)["__type"], "InternalServiceError", "CloudWatch 500 __type")
    clear_rules()
    EXPECTED["throttle"] += 1
    EXPECTED["error500"] += 1
    ops = {(r["service"], r["operation"]): r for r in stats()["by_operation"]}
    check_eq(ops[("cloudwatch", "PutMetricData")]["injected"].get("throttle"), 1, "CloudWatch injection counted")
    check_eq(ops[("cloudwatch", "ListMetrics")]["injected"].get("error500"), 1, "CloudWatch 500 counted")


@check
def partial_put_records():
    kinesis = client("kinesis")
    stream = make_stream(kinesis, shards=2)
    add_rule(service="kinesis", operation="PutRecords", mode="partial", rate=0.3)
    acknowledged, failed_total = set(), 0
    for batch in range(5):
        records = [{"Data": f"b{batch}-r{i}".encode(), "PartitionKey": f"pk{i}"} for i in range(10)]
        answer = kinesis.put_records(StreamName=stream, Records=records)
        results = answer["Records"]
        check_eq(len(results), 10, "results, one per entry")
        failed = [i for i, r in enumerate(results) if "ErrorCode" in r]
        check_eq(len(failed), 3, "entries failed (30% of 10)")
        check_eq(answer["FailedRecordCount"], 3, "FailedRecordCount")
        for i, r in enumerate(results):
            if i in failed:
                check_eq(r["ErrorCode"], "ProvisionedThroughputExceededException", "ErrorCode")
                assert r["ErrorMessage"].startswith("Rate exceeded for shard ") and stream in r["ErrorMessage"]
                assert "SequenceNumber" not in r
            else:
                acknowledged.add((records[i]["Data"], r["ShardId"], r["SequenceNumber"]))
        failed_total += len(failed)
    stored = read_stream(kinesis, stream)
    check_eq({(data, shard, seq) for data, (shard, seq) in stored.items()}, acknowledged,
             "GetRecords finds exactly the acknowledged entries (same shards and sequence numbers)")
    check_eq(len(stored), 35, "records stored")
    clear_rules()
    # Every entry failing: nothing is forwarded, nothing stored.
    add_rule(service="kinesis", mode="partial", rate=1.0, count=1)
    before = stats()["forwarded"]
    answer = kinesis.put_records(StreamName=stream, Records=[{"Data": b"never", "PartitionKey": "p"}] * 4)
    check_eq(answer["FailedRecordCount"], 4, "all entries failed")
    check_eq(stats()["forwarded"], before, "forwarded while every entry failed")
    # count=1 is used up: the next PutRecords goes through whole.
    check_eq(kinesis.put_records(StreamName=stream, Records=[{"Data": b"after", "PartitionKey": "p"}])
             ["FailedRecordCount"], 0, "after the count ran out")
    check_eq(set(read_stream(kinesis, stream)), set(stored) | {b"after"}, "stream after all-failed batch")
    clear_rules()
    EXPECTED["partial"] += 6
    EXPECTED["entries_failed"] += failed_total + 4


@check
def partial_rate_on_single_entries():
    """Stochastic rounding: with rate 0.5 single-entry batches fail about half the time, reproducibly per seed."""
    kinesis = client("kinesis")
    stream = make_stream(kinesis, shards=1)

    def pattern(seed):
        rule = add_rule(service="kinesis", operation="PutRecords", mode="partial", rate=0.5, seed=seed)
        outcome = []
        for i in range(30):
            answer = kinesis.put_records(StreamName=stream, Records=[{"Data": b"s%d" % i, "PartitionKey": "p"}])
            outcome.append(answer["FailedRecordCount"])
        control("DELETE", f"/{rule}")
        return outcome

    first, second = pattern(7), pattern(7)
    check_eq(first, second, "same seed, same faults")
    assert 5 <= sum(first) <= 25, f"{sum(first)} of 30 single-entry batches failed at rate 0.5"
    EXPECTED["partial"] += 2 * sum(first)
    EXPECTED["entries_failed"] += 2 * sum(first)


@check
def error500_per_service():
    kinesis, dynamodb, s3, logs = client("kinesis"), client("dynamodb"), client("s3"), client("logs")
    stream = make_stream(kinesis, shards=1)
    add_rule(service="kinesis", operation="PutRecords", mode="error500")
    code, status, _ = error_of(kinesis.put_records, StreamName=stream, Records=[{"Data": b"e", "PartitionKey": "p"}])
    check_eq((code, status), ("InternalFailure", 500), "Kinesis 500")
    clear_rules()
    check_eq(read_stream(kinesis, stream), {}, "the failed PutRecords stored nothing")

    add_rule(service="dynamodb", mode="error500")
    code, status, _ = error_of(dynamodb.get_item, TableName=f"fp-{RUN}", Key={"pk": {"S": "k1"}})
    check_eq((code, status), ("InternalServerError", 500), "DynamoDB 500")
    clear_rules()

    name = bucket()
    add_rule(service="s3", operation="GetObject", mode="error500")
    add_rule(service="s3", operation="PutObject", mode="error500", status=503)
    code, status, _ = error_of(s3.put_object, Bucket=name, Key="e503.txt", Body=b"x")
    check_eq((code, status), ("ServiceUnavailable", 503), "S3 503")
    code, status, _ = error_of(s3.get_object, Bucket=name, Key="multi.bin")
    check_eq((code, status), ("InternalError", 500), "S3 500")
    clear_rules()

    add_rule(service="logs", mode="error500", status=503)
    code, status, _ = error_of(logs.describe_log_groups)
    check_eq((code, status), ("ServiceUnavailableException", 503), "Logs 503")
    clear_rules()
    EXPECTED["error500"] += 5


@check
def reset_connection():
    dynamodb, s3 = client("dynamodb"), client("s3")
    add_rule(service="dynamodb", operation="GetItem", mode="reset", count=1)
    try:
        dynamodb.get_item(TableName=f"fp-{RUN}", Key={"pk": {"S": "k1"}})
        raise AssertionError("GetItem succeeded through a reset")
    except botocore.exceptions.ConnectionClosedError as error:
        cause = error.kwargs.get("error")  # urllib3's ProtocolError('Connection aborted.', ConnectionResetError(...))
        assert "ConnectionResetError" in repr(cause), repr(cause)
    # The rule is used up; a new connection works.
    assert "Item" in dynamodb.get_item(TableName=f"fp-{RUN}", Key={"pk": {"S": "k1"}}, ConsistentRead=True)
    clear_rules()
    # A raw socket sees ECONNRESET, not a clean end of stream, after sending a whole request with a body.
    name = bucket()
    add_rule(service="s3", operation="PutObject", mode="reset", count=1)
    url = urllib.parse.urlsplit(PROXY)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    body = b"y" * 300_000
    sock.sendall(f"PUT /{name}/reset.bin HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + body)
    try:
        data = sock.recv(100)
        raise AssertionError(f"got {data!r} instead of a reset")
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    clear_rules()
    code, status, _ = error_of(s3.head_object, Bucket=name, Key="reset.bin")
    check_eq(status, 404, "the reset PutObject stored nothing")
    EXPECTED["reset"] += 2


@check
def latency():
    logs = client("logs")
    start = time.monotonic()
    logs.describe_log_groups()
    baseline = time.monotonic() - start
    add_rule(service="logs", operation="DescribeLogGroups", mode="latency", latency_ms=400)
    start = time.monotonic()
    groups = logs.describe_log_groups()["logGroups"]
    delayed = time.monotonic() - start
    assert any(g["logGroupName"] == f"/fp/{RUN}" for g in groups), "latency still answers"
    assert delayed >= 0.4, f"answer after {delayed:.3f} s, expected at least 0.4 s"
    assert delayed >= baseline + 0.3, f"{delayed:.3f} s against {baseline:.3f} s without the rule"
    # The upstream has acted before the answer is delayed: a client that gives up early still left its write behind.
    timeout_client = client("logs", read_timeout=0.15, connect_timeout=2)
    add_rule(service="logs", operation="CreateLogStream", mode="latency", latency_ms=600)
    try:
        timeout_client.create_log_stream(logGroupName=f"/fp/{RUN}", logStreamName="slow")
        raise AssertionError("the delayed call did not time out")
    except botocore.exceptions.ReadTimeoutError:
        pass
    clear_rules()
    streams = logs.describe_log_streams(logGroupName=f"/fp/{RUN}")["logStreams"]
    assert "slow" in [s["logStreamName"] for s in streams], "the delayed CreateLogStream did not reach moto"
    EXPECTED["latency"] += 2


@check
def count_and_rate_and_order():
    dynamodb = client("dynamodb")
    table = f"fp-{RUN}"
    key = {"pk": {"S": "k1"}}
    rule = add_rule(service="dynamodb", operation="GetItem", mode="throttle", count=2)
    outcomes = []
    for _ in range(4):
        try:
            dynamodb.get_item(TableName=table, Key=key)
            outcomes.append("ok")
        except botocore.exceptions.ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    check_eq(outcomes, ["ProvisionedThroughputExceededException"] * 2 + ["ok", "ok"], "count=2")
    status, rules = control("GET")
    described = next(r for r in rules if r["id"] == rule)
    check_eq((described["injected"], described["remaining"]), (2, 0), "rule counters")
    clear_rules()

    # rate 0.5 over 40 requests, reproducible with the same seed.
    def pattern():
        rid = add_rule(service="dynamodb", operation="GetItem", mode="throttle", rate=0.5, seed=42)
        out = []
        for _ in range(40):
            try:
                dynamodb.get_item(TableName=table, Key=key)
                out.append(0)
            except botocore.exceptions.ClientError:
                out.append(1)
        control("DELETE", f"/{rid}")
        return out

    first, second = pattern(), pattern()
    check_eq(first, second, "same seed, same throttled requests")
    assert 8 <= sum(first) <= 32, f"{sum(first)} of 40 throttled at rate 0.5"

    # The first matching rule that fires applies: rate 0 never fires, the other operation does not match.
    add_rule(service="dynamodb", operation="GetItem", mode="throttle", rate=0.0)
    add_rule(service="dynamodb", operation="PutItem", mode="reset")
    add_rule(service="dynamodb", operation="GetItem", mode="error500")
    add_rule(service="dynamodb", operation="GetItem", mode="throttle")
    code, status, _ = error_of(dynamodb.get_item, TableName=table, Key=key)
    check_eq((code, status), ("InternalServerError", 500), "first firing rule")
    clear_rules()
    EXPECTED["throttle"] += 2 + 2 * sum(first)
    EXPECTED["error500"] += 1


@check
def control_api():
    status, answer = control("POST", "", {"service": "kinesis", "mode": "explode"})
    check_eq(status, 400, "invalid mode")
    status, answer = control("POST", "", {"service": "s3", "mode": "partial"})
    check_eq(status, 400, "partial outside Kinesis PutRecords")
    status, answer = control("POST", "", {"service": "logs", "mode": "latency"})
    check_eq(status, 400, "latency without latency_ms")
    status, answer = control("POST", "", [{"service": "s3", "mode": "throttle"}, {"service": "s3", "mode": "nope"}])
    check_eq((status, control("GET")[1]), (400, []), "a list with an invalid rule adds none")
    first = add_rule(service="s3", mode="throttle", rate=0.0)
    second = add_rule(service="logs", mode="throttle", rate=0.0)
    status, rules = control("GET")
    check_eq([r["id"] for r in rules], [first, second], "rules listed in order")
    check_eq(control("DELETE", f"/{first}")[0], 200, "delete one")
    check_eq(control("DELETE", f"/{first}")[0], 404, "delete unknown")
    check_eq([r["id"] for r in control("GET")[1]], [second], "one rule left")
    check_eq(control("DELETE")[1], {"removed": 1}, "delete all")
    check_eq(control("GET")[1], [], "no rules")
    check_eq(control("GET", "/nope")[0], 404, "unknown control path")


@check
def stats_add_up():
    s = stats()
    check_eq(s["requests"], s["forwarded"] + s["not_forwarded"] + s["upstream_errors"] + s["client_aborted"],
             "requests = forwarded + not forwarded + upstream errors + client aborts")
    check_eq(s["upstream_errors"], 0, "upstream errors")
    for mode in ("throttle", "partial", "error500", "latency", "reset"):
        check_eq(s["injected_by_mode"].get(mode, 0), EXPECTED[mode], f"{mode} injections")
    check_eq(s["entries_failed"], EXPECTED["entries_failed"], "entries failed by partial")
    check_eq(s["injected"], sum(s["injected_by_mode"].values()), "injected total")
    check_eq(sum(i["count"] for i in s["injections"]), s["injected"], "injections by (service, operation, mode)")
    for row in s["by_operation"]:
        check_eq(row["requests"], row["forwarded"] + row["not_forwarded"] + row["upstream_errors"]
                 + row["client_aborted"], f"{row['service']}.{row['operation']} requests")
    # Not forwarded: throttle, error500, reset and the all-failed partial batches.
    all_failed_batches = 1 + EXPECTED["partial"] - 6  # the single-entry batches that failed are all-failed too
    check_eq(s["not_forwarded"], EXPECTED["throttle"] + EXPECTED["error500"] + EXPECTED["reset"]
             + all_failed_batches, "not forwarded")


def main():
    if not PROXY:
        print(__doc__)
        return 2
    clear_rules()
    control("DELETE", "/stats")
    passed = failed = 0
    for function in CHECKS:
        start = time.monotonic()
        try:
            function()
            passed += 1
            print(f"ok    {function.__name__} ({time.monotonic() - start:.2f} s)", flush=True)
        except Exception:  # noqa: BLE001 - report every check
            failed += 1
            print(f"FAIL  {function.__name__}", flush=True)
            traceback.print_exc()
            clear_rules()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
