// Drives the real amazon-chime-sdk-js under Node against a chimewatch gateway: its DefaultEventController publishes
// meeting events, its DefaultMeetingEventReporter uploads them with the SDK's own ingestion protocol (important
// events at once, the rest batched, the remainder beaconed on `pagehide`). Prints what the SDK's observers saw as
// JSON on stdout, for the test to compare with what landed on the stream.
//
// Usage: node real-client.js <ingestion URL> <meetingId> <attendeeId> <joinToken> [session|at-capacity]
// `at-capacity` forces a failed join: the SDK publishes meetingStartFailed with AudioCallAtCapacity, as it does when
// the meeting is full.
'use strict';

const [ingestionUrl, meetingId, attendeeId, joinToken, scenario = 'session'] = process.argv.slice(2);

// The browser globals the SDK touches. sendBeacon really posts (text/plain, no headers), like a browser.
const inFlight = [];
globalThis.window = new EventTarget();
globalThis.document = Object.assign(new EventTarget(), { visibilityState: 'visible' });
Object.defineProperty(globalThis, 'navigator', {
  configurable: true,
  value: {
    userAgent:
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36',
    sendBeacon(url, body) {
      inFlight.push(fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8' } }));
      return true;
    },
  },
});

const sdk = require('amazon-chime-sdk-js');

async function main() {
  const configuration = new sdk.MeetingSessionConfiguration(
    {
      Meeting: {
        MeetingId: meetingId,
        ExternalMeetingId: 'real-client-test',
        MediaRegion: 'us-east-1',
        MediaPlacement: {
          AudioHostUrl: 'audio.example.test:3478',
          AudioFallbackUrl: 'wss://audio.example.test:443/calls/x',
          SignalingUrl: 'wss://signal.example.test/control/x',
          TurnControlUrl: 'https://turn.example.test/v2/turn_sessions',
          EventIngestionUrl: ingestionUrl,
        },
      },
    },
    { Attendee: { AttendeeId: attendeeId, ExternalUserId: 'real-client-user', JoinToken: joinToken } },
  );
  const logger = new sdk.ConsoleLogger('sdk', sdk.LogLevel.ERROR);
  // Flush every 200 ms so the test is quick; everything else is the SDK's default behaviour.
  const buffer = new sdk.EventBufferConfiguration(200, 10, 64, 100);
  const reporter = new sdk.DefaultMeetingEventReporter(
    new sdk.EventIngestionConfiguration(
      new sdk.MeetingEventsClientConfiguration(meetingId, attendeeId, joinToken),
      configuration.urls.eventIngestionURL,
      buffer,
    ),
    logger,
  );
  const controller = new sdk.DefaultEventController(configuration, logger, reporter);
  const published = [];
  controller.addObserver({ eventDidReceive: (name, attributes) => published.push({ name, attributes }) });

  await controller.publishEvent('audioInputSelected');
  await controller.publishEvent('meetingStartRequested');
  if (scenario === 'at-capacity') {
    await sleep(300);
    await controller.publishEvent('meetingStartFailed', {
      meetingStatus: 'AudioCallAtCapacity',
      meetingErrorMessage: 'The meeting is at capacity',
      signalingOpenDurationMs: 180,
      retryCount: 0,
    });
    return finish(published);
  }
  await controller.publishEvent('meetingStartSucceeded', {
    meetingStartDurationMs: 1312,
    signalingOpenDurationMs: 211,
    iceGatheringDurationMs: 340,
    maxVideoTileCount: 0,
    poorConnectionCount: 0,
    retryCount: 0,
  });
  await controller.publishEvent('attendeePresenceReceived', { attendeePresenceDurationMs: 402, retryCount: 0 });
  await controller.publishEvent('audioInputFailed', { audioInputErrorMessage: 'NotReadableError: Could not start audio source' });
  await controller.publishEvent('meetingReconnected', { meetingStatus: 'SignalingChannelClosedUnexpectedly', retryCount: 1 });
  await sleep(600);
  await controller.publishEvent('receivingAudioDropped');
  await controller.publishEvent('meetingEnded', { meetingStatus: 'Left', meetingDurationMs: 65000, retryCount: 1 });
  await finish(published);

  // The page goes away: the SDK beacons whatever it still holds.
  async function finish(published) {
    window.dispatchEvent(new Event('pagehide'));
    await sleep(600);
    await Promise.allSettled(inFlight);
    await controller.destroy();
    process.stdout.write(JSON.stringify(published) + '\n');
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
