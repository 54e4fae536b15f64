// A local stub of CloudWatch Logs and CloudWatch for the baseline: it reads each request and answers what the AWS SDK
// expects of a success (an empty JSON object for the JSON protocols, an empty PutMetricData response for the others),
// so that the baseline's figures are the Lambda logic's, not an emulator's.
//
// node stub.js PORT
const http = require("http");

const [port] = process.argv.slice(2);
http
  .createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const protocol = req.headers["smithy-protocol"] || "";
      const target = req.headers["x-amz-target"] || "";
      if (protocol === "rpc-v2-cbor") {
        // CloudWatch's CBOR protocol: an empty map.
        res.writeHead(200, { "content-type": "application/cbor", "smithy-protocol": "rpc-v2-cbor" });
        res.end(Buffer.from([0xa0]));
      } else if (target || (req.headers["content-type"] || "").includes("json")) {
        res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
        res.end("{}");
      } else {
        res.writeHead(200, { "content-type": "text/xml" });
        res.end('<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></PutMetricDataResponse>');
      }
    });
  })
  .listen(Number(port), "127.0.0.1", () => console.error(`CloudWatch stub listening on http://127.0.0.1:${port}`));
