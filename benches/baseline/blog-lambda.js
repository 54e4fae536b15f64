// The baseline of the load benchmarks: the AWS blog sample's meeting-events Lambda, rebuilt from its description
// (see BENCHMARKS.md), behind a plain Node HTTP server in place of API Gateway, with the AWS SDK for JavaScript v3
// against a local stub of CloudWatch Logs and CloudWatch (stub.js), so that only the Lambda's own work is measured.
//
// Per request, as the sample does: parse the JSON array; take meetingId and attendeeId from the first element;
// create a new log stream `<meetingId>/<attendeeId>/<now>`; PutLogEvents with one log event per meeting event;
// PutMetricData of meetingStartDurationMs (by sdkName) for each meetingStartSucceeded with a duration.
//
// node blog-lambda.js PORT STUB_URL
const http = require("http");
const { CloudWatchLogsClient, CreateLogStreamCommand, PutLogEventsCommand } = require("@aws-sdk/client-cloudwatch-logs");
const { CloudWatchClient, PutMetricDataCommand } = require("@aws-sdk/client-cloudwatch");

const [port, stub] = process.argv.slice(2);
const aws = { endpoint: stub, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } };
const logs = new CloudWatchLogsClient(aws);
const metrics = new CloudWatchClient(aws);
const LOG_GROUP = "/aws/lambda/meeting-events";
const NAMESPACE = "AmazonChimeSDKMeetingEvents";

async function handler(body) {
  let events;
  try {
    events = JSON.parse(body);
  } catch {
    events = null;
  }
  if (!Array.isArray(events)) {
    return [422, { error: "Invalid input: Ensure that you pass a JSON array of meeting events" }];
  }
  if (events.length === 0) return [200, {}];
  const { meetingId, attendeeId } = events[0].attributes || {};
  if (!meetingId || !attendeeId) return [422, { error: "Invalid input: meetingId and attendeeId are required" }];
  try {
    const logStreamName = `/meeting-events/${meetingId}/${attendeeId}/${Date.now()}`;
    await logs.send(new CreateLogStreamCommand({ logGroupName: LOG_GROUP, logStreamName }));
    await logs.send(
      new PutLogEventsCommand({
        logGroupName: LOG_GROUP,
        logStreamName,
        logEvents: events.map((e) => ({ message: JSON.stringify(e), timestamp: e.attributes.timestampMs })),
      }),
    );
    const data = events
      .filter((e) => e.name === "meetingStartSucceeded" && e.attributes.meetingStartDurationMs > 0)
      .map((e) => ({
        MetricName: "meetingStartDurationMs",
        Unit: "Milliseconds",
        Value: e.attributes.meetingStartDurationMs,
        Timestamp: new Date(e.attributes.timestampMs),
        Dimensions: [{ Name: "sdkName", Value: String(e.attributes.sdkName) }],
      }));
    if (data.length > 0) {
      await metrics.send(new PutMetricDataCommand({ Namespace: NAMESPACE, MetricData: data }));
    }
    return [200, {}];
  } catch (err) {
    console.error(err);
    return [500, { error: "Internal server error" }];
  }
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const [status, answer] = await handler(Buffer.concat(chunks).toString("utf8"));
      res.writeHead(status, { "content-type": "application/json", "access-control-allow-origin": "*" });
      res.end(JSON.stringify(answer));
    });
  })
  .listen(Number(port), "127.0.0.1", () => console.error(`blog-lambda baseline listening on http://127.0.0.1:${port}`));
