# The moonpool frame body, protocol versions 1 and 2. Normative text:
# DESIGN.md section 5. Every frame on the wire is a 16-byte header (body
# length, XXH3 body checksum, header check) followed by one message of this
# schema in the standard unpacked stream framing, root struct Frame.
#
# Version 1 is the first five union members and the first fields of each
# struct. Version 2 grows the schema only by new fields and union members (Cap'n
# Proto's compatible evolution), so this stays one file: so far the Hello's
# maxProtocolVersion (negotiation), the cancel frame, reply streams (the
# request's streamCredit, the streamItem and streamEnd kinds, the credit
# frame), and the exactly-once fields. What is new in version 2 is sent, and
# has effect, only on a connection that negotiated version 2.
@0xad3a0e3e8bcce13d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("moonpool::wire::schema");

struct Frame {
  union {
    hello    @0 :Hello;
    envelope @1 :Envelope;
    ping     @2 :UInt64;    # keepalive; the nonce comes back in pong
    pong     @3 :UInt64;
    goodbye  @4 :Goodbye;
    cancel   @5 :UInt64;    # version 2: the requester gave up on this correlationId
    credit   @6 :Credit;    # version 2: flow control of a reply stream
  }
}
struct Hello {
  magic           @0 :UInt64;   # 0x4D4F4F4E504F4F4C ("MOONPOOL")
  protocolVersion @1 :UInt32;   # client: its lowest version; server: the chosen one
  peerName        @2 :Text;     # diagnostics only
  incarnation     @3 :UInt64;   # random per transport instance, never 0; with a
                                # correlation id it names a request uniquely
  maxProtocolVersion @4 :UInt32;  # version 2: highest version this side speaks;
                                  # 0 = protocolVersion (a version 1 Hello)
}
struct Envelope {
  correlationId @0 :UInt64;     # chosen by the requester; the reply carries the same
  kind          @1 :Kind;
  endpoint      @2 :UInt64;     # destination token; 0 = the server's default queue
  payload       @3 :Data;
  errorMessage  @4 :Text;       # only for kind == error
  timeoutMicros @5 :UInt64;     # request: the budget left when sent, 0 = none
  errorCode     @6 :UInt32;     # error: an absl::StatusCode, 0 = unknown
  exactlyOnce   @7 :Bool;       # version 2, request: the server keeps its outcome to send again
  answeredBelow @8 :UInt64;     # version 2, request: every id of this sender below it is settled
  streamCredit  @9 :UInt64;     # version 2, request: 0 = one reply; > 0 = a reply
                                # stream, with this many bytes of credit
  enum Kind {
    request    @0;
    reply      @1;
    error      @2;
    oneWay     @3;
    streamItem @4;              # version 2: one item of a reply stream
    streamEnd  @5;              # version 2: the stream's end (payload may be empty)
  }
}
# Version 2: the requester consumed `bytes` of the stream's item payloads;
# the server may send that many more.
struct Credit {
  correlationId @0 :UInt64;
  bytes         @1 :UInt64;
}
struct Goodbye {
  lastCorrelationId @0 :UInt64; # requests above this were not and will not be processed
  reason            @1 :Text;
}
