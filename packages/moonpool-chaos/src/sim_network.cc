// SimLoop's network: listeners, connects, streams, the faults of the
// ChaosConfig and the integrity checker. See sim_core.h for ownership and
// sim_loop.h for the model.
//
// Every callback into user code (StreamHandler, accept, connect) happens in
// an event or posted callback of its own, never inside the call that caused
// it, and is the last thing its event does with the connection: the handler
// may close or destroy its stream.
#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sim_core.h"

#ifdef MOONPOOL_PLANTED_BUGS
#include "moonpool_planted.h"
#endif

namespace moonpool::chaos::internal {
namespace {

uint64_t Dir(const Connection& c, int w) { return c.id * 2 + w; }

absl::Status Refused(const driver::Address& a) {
  return absl::UnavailableError(
      absl::StrCat("connect to ", a.ToString(),
                   ": connection refused (ECONNREFUSED, simulated)"));
}

// ---------------------------------------------------------------- handles

class SimStream final : public driver::Stream {
 public:
  SimStream(SimCore* core, uint64_t id, int side, driver::Address local,
            driver::Address peer)
      : core_(core), id_(id), side_(side), local_(local), peer_(peer) {
    ++core_->live_objects;
  }
  ~SimStream() override {
    Close();
    --core_->live_objects;
  }

  void SetHandler(driver::StreamHandler* handler) override {
    if (!closed_) core_->SetHandler(id_, side_, handler);
  }
  absl::Status StartReading() override {
    if (closed_) {
      return absl::FailedPreconditionError("StartReading on a closed stream");
    }
    return core_->StartReading(id_, side_);
  }
  void StopReading() override {
    if (!closed_) core_->StopReading(id_, side_);
  }
  absl::StatusOr<size_t> Write(absl::Span<const char> bytes) override {
    if (closed_)
      return absl::FailedPreconditionError("write on a closed stream");
    return core_->Write(id_, side_, bytes);
  }
  size_t queued_write_bytes() const override {
    return closed_ ? 0 : core_->QueuedBytes(id_, side_);
  }
  void Shutdown() override {
    if (!closed_) core_->Shutdown(id_, side_);
  }
  void Close() override {
    if (closed_) return;
    closed_ = true;
    core_->Close(id_, side_);
  }
  const driver::Address& local_address() const override { return local_; }
  const driver::Address& peer_address() const override { return peer_; }

 private:
  SimCore* const core_;
  const uint64_t id_;
  const int side_;
  bool closed_ = false;
  const driver::Address local_;
  const driver::Address peer_;
};

class SimListener final : public driver::Listener {
 public:
  SimListener(SimCore* core, std::unique_ptr<ListenerState> state)
      : core_(core), state_(std::move(state)) {
    ++core_->live_objects;
  }
  ~SimListener() override {
    Close();
    if (state_->alive_flag != nullptr) *state_->alive_flag = false;
    --core_->live_objects;
  }
  const driver::Address& address() const override { return state_->address; }
  void Close() override { core_->CloseListener(state_.get()); }

 private:
  SimCore* const core_;
  std::unique_ptr<ListenerState> state_;
};

}  // namespace

// ---------------------------------------------------------------- listen

absl::StatusOr<std::unique_ptr<driver::Listener>> SimCore::Listen(
    HostState* host, const driver::Address& address,
    const driver::ListenOptions& options, driver::AcceptCallback on_accept) {
  const std::string where = absl::StrCat("listen on ", address.ToString());
  if (!host->up) {
    return absl::UnavailableError(absl::StrCat(where, ": host is down"));
  }
  if (options.backlog <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": backlog must be positive"));
  }
  const bool any = address.bytes() == driver::Address().bytes() &&
                   address.family() == host->ip.family();
  if (!any && address.WithPort(0) != host->ip) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": this host's address is ", host->ip.HostString()));
  }
  uint16_t port = address.port();
  if (port == 0) {
    // The next free ephemeral port, as the OS would pick one.
    for (int tries = 0; tries < 65536; ++tries) {
      port = host->next_port;
      host->next_port = host->next_port == 65535 ? 40000 : host->next_port + 1;
      if (!host->listeners.contains(port)) break;
    }
  }
  if (host->listeners.contains(port)) {
    return absl::AlreadyExistsError(
        absl::StrCat(where, ": address already in use (EADDRINUSE)"));
  }
  auto state = std::make_unique<ListenerState>();
  state->host = host;
  state->address = host->ip.WithPort(port);
  state->on_accept = std::move(on_accept);
  host->listeners[port] = state.get();
  TraceEvent(TraceKind::kListen, host->id, port);
  return std::unique_ptr<driver::Listener>(
      std::make_unique<SimListener>(this, std::move(state)));
}

void SimCore::CloseListener(ListenerState* state) {
  if (state->closed) return;
  state->closed = true;
  auto it = state->host->listeners.find(state->address.port());
  if (it != state->host->listeners.end() && it->second == state) {
    state->host->listeners.erase(it);
    TraceEvent(TraceKind::kListenClosed, state->host->id,
               state->address.port());
  }
  // Inside its own callback the callback cannot be destroyed; Deliver
  // drops it after.
  if (state->alive_flag == nullptr) state->on_accept = nullptr;
}

// ---------------------------------------------------------------- connect

absl::StatusOr<std::unique_ptr<driver::Stream>> SimCore::Connect(
    HostState* host, const driver::Address& address,
    driver::ConnectCallback on_connected) {
  if (!host->up) {
    return absl::UnavailableError(
        absl::StrCat("connect to ", address.ToString(), ": host is down"));
  }
  auto owned = std::make_unique<Connection>();
  Connection& c = *owned;
  c.id = next_connection_id_++;
  connections_[c.id] = std::move(owned);
  Endpoint& ep = c.ep[0];
  ep.exists = true;
  ep.host = host;
  ep.local = host->ip.WithPort(host->next_port);
  host->next_port = host->next_port == 65535 ? 40000 : host->next_port + 1;
  ep.peer = address;
  ep.phase = Endpoint::Phase::kConnecting;
  ep.on_connected = std::move(on_connected);
  TraceEvent(TraceKind::kConnect, c.id, 0, address.port());

  const uint64_t id = c.id;
  const ChaosConfig& chaos = options_.chaos;
  if (rng_.Bernoulli(chaos.connect_refused_probability)) {
    TraceEvent(TraceKind::kFaultRefuse, id);
    assertions_.RecordSometimes("fault.connect_refused", true);
    Schedule(now_ns_ + DrawLatency() * 2,
             [this, id, address] { ConnectDone(id, Refused(address)); });
  } else if (rng_.Bernoulli(chaos.connect_hang_probability)) {
    // No answer ever: the caller's own timeout ends it.
    TraceEvent(TraceKind::kFaultHang, id);
    assertions_.RecordSometimes("fault.connect_hang", true);
  } else {
    Schedule(now_ns_ + DrawLatency(),
             [this, id, address] { SynArrive(id, address); });
  }
  return std::unique_ptr<driver::Stream>(
      std::make_unique<SimStream>(this, id, 0, ep.local, address));
}

void SimCore::SynArrive(uint64_t id, driver::Address target) {
  Connection* c = Find(id);
  if (c == nullptr || c->ep[0].closed || c->ep[0].dead) return;
  auto host_it = host_by_ip_.find(target.WithPort(0));
  ListenerState* listener = nullptr;
  if (host_it != host_by_ip_.end() && host_it->second->up) {
    auto it = host_it->second->listeners.find(target.port());
    if (it != host_it->second->listeners.end() && !it->second->closed) {
      listener = it->second;
    }
  }
  if (listener == nullptr) {
    Schedule(now_ns_ + DrawLatency(),
             [this, id, target] { ConnectDone(id, Refused(target)); });
    return;
  }
  Endpoint& ep = c->ep[1];
  ep.exists = true;
  ep.host = listener->host;
  ep.local = listener->address;
  ep.peer = c->ep[0].local;
  ep.phase = Endpoint::Phase::kConnected;
  TraceEvent(TraceKind::kAccept, id);
  Schedule(now_ns_ + DrawLatency(),
           [this, id] { ConnectDone(id, absl::OkStatus()); });

  auto stream = std::make_unique<SimStream>(this, id, 1, ep.local, ep.peer);
  // Last: the callback may close the listener or destroy it.
  driver::AcceptCallback cb = std::move(listener->on_accept);
  bool alive = true;
  listener->alive_flag = &alive;
  cb(std::unique_ptr<driver::Stream>(std::move(stream)));
  if (!alive) return;
  listener->alive_flag = nullptr;
  if (!listener->closed) listener->on_accept = std::move(cb);
}

void SimCore::ConnectDone(uint64_t id, absl::Status status) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Endpoint& ep = c->ep[0];
  if (ep.closed || ep.dead || ep.phase != Endpoint::Phase::kConnecting) return;
  // Reset while the answer was on its way.
  if (status.ok() && !ep.broken.ok()) status = ep.broken;
  driver::ConnectCallback cb = std::move(ep.on_connected);
  ep.on_connected = nullptr;
  if (!status.ok()) {
    ep.phase = Endpoint::Phase::kFailed;
    ep.broken = status;
    ep.pending.clear();
    ep.want_reading = false;
    TraceEvent(TraceKind::kConnectFailed, id);
    MaybeReap(*c);
    if (cb) cb(std::move(status));
    return;
  }
  ep.phase = Endpoint::Phase::kConnected;
  TraceEvent(TraceKind::kConnected, id);
  if (!ep.pending.empty()) ScheduleDrain(*c, 0);
  MaybeFin(*c, 0);
  ScheduleRead(*c, 0);
  if (cb) cb(absl::OkStatus());
}

// ---------------------------------------------------------------- streams

Connection* SimCore::Find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void SimCore::SetHandler(uint64_t id, int side,
                         driver::StreamHandler* handler) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  c->ep[side].handler = handler;
  if (handler == nullptr) c->ep[side].want_reading = false;
}

absl::Status SimCore::StartReading(uint64_t id, int side) {
  Connection* c = Find(id);
  if (c == nullptr || c->ep[side].dead) {
    return absl::FailedPreconditionError("StartReading on a dead stream");
  }
  Endpoint& ep = c->ep[side];
  if (ep.phase == Endpoint::Phase::kFailed) return ep.broken;
  if (ep.handler == nullptr) {
    return absl::FailedPreconditionError("StartReading before SetHandler");
  }
  ep.want_reading = true;
  ScheduleRead(*c, side);
  return absl::OkStatus();
}

void SimCore::StopReading(uint64_t id, int side) {
  if (Connection* c = Find(id)) c->ep[side].want_reading = false;
}

absl::StatusOr<size_t> SimCore::Write(uint64_t id, int side,
                                      absl::Span<const char> bytes) {
  Connection* c = Find(id);
  if (c == nullptr || c->ep[side].dead) {
    return absl::UnavailableError("write on a dead connection");
  }
  Endpoint& ep = c->ep[side];
  if (ep.shutdown_requested) {
    return absl::FailedPreconditionError("write after Shutdown");
  }
  if (!ep.broken.ok()) return ep.broken;
  if (bytes.empty()) return size_t{0};
  if (ep.phase == Endpoint::Phase::kConnecting || !ep.pending.empty()) {
    ep.pending.append(bytes.data(), bytes.size());
    TraceEvent(TraceKind::kWrite, Dir(*c, side), 0, bytes.size());
    return size_t{0};
  }
  Pipe& p = c->pipe[side];
  const size_t cap = options_.chaos.kernel_buffer_bytes;
  const size_t space = p.kernel_bytes < cap ? cap - p.kernel_bytes : 0;
  size_t take = std::min(bytes.size(), space);
  if (take > 0 && rng_.Bernoulli(options_.chaos.partial_write_probability)) {
    // A random byte boundary, possibly none at all.
    take = static_cast<size_t>(rng_.Uniform(take));
    TraceEvent(TraceKind::kFaultPartialWrite, Dir(*c, side), take,
               bytes.size());
    assertions_.RecordSometimes("fault.partial_write", true);
  }
  Accept(*c, side, bytes.first(take));
  if (take < bytes.size()) {
    ep.pending.append(bytes.data() + take, bytes.size() - take);
    // Room left (a partial write): the rest moves on the next turn rather
    // than waiting for a read that may never come.
    if (take < space) ScheduleDrain(*c, side);
  }
  TraceEvent(TraceKind::kWrite, Dir(*c, side), take, bytes.size() - take);
  return take;
}

size_t SimCore::QueuedBytes(uint64_t id, int side) {
  Connection* c = Find(id);
  return c == nullptr ? 0 : c->ep[side].pending.size();
}

void SimCore::Shutdown(uint64_t id, int side) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Endpoint& ep = c->ep[side];
  if (ep.shutdown_requested || ep.dead) return;
  ep.shutdown_requested = true;
  TraceEvent(TraceKind::kShutdown, Dir(*c, side));
  MaybeFin(*c, side);
}

void SimCore::Close(uint64_t id, int side) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Endpoint& ep = c->ep[side];
  if (ep.closed) return;
  ep.closed = true;
  ep.handler = nullptr;
  ep.on_connected = nullptr;
  ep.pending.clear();  // stream.h: writes still queued are dropped
  ep.want_reading = false;
  TraceEvent(TraceKind::kClose, Dir(*c, side));
  if (!ep.dead && ep.phase == Endpoint::Phase::kConnected) {
    // What the kernel took still goes, then FIN (close(2) on a socket).
    Pipe& out = c->pipe[side];
    if (!out.dead && !out.fin_pending) {
      out.fin_pending = true;
      ScheduleTransmit(*c, side, now_ns_);
    }
    // Unread bytes at close make the kernel answer with RST.
    Pipe& in = c->pipe[1 - side];
    in.reader_gone = true;
    if (!in.dead && in.recv.size() > in.recv_head && c->ep[1 - side].exists) {
      ResetEndpoint(*c, 1 - side,
                    absl::UnavailableError(
                        "connection reset by peer (ECONNRESET, simulated: "
                        "closed with unread data)"));
    }
  }
  MaybeReap(*c);
}

void SimCore::MaybeReap(Connection& c) {
  auto gone = [](const Endpoint& e) { return !e.exists || e.closed || e.dead; };
  // The acceptor's end may still come (the SYN in flight) while the
  // connector's end is open; once the connector's end is gone it never will.
  if (!c.reaping && (c.ep[0].closed || c.ep[0].dead) && gone(c.ep[1])) {
    c.reaping = true;
    reap_.push_back(c.id);
  }
}

// ---------------------------------------------------------------- writes

void SimCore::Accept(Connection& c, int w, absl::Span<const char> bytes) {
  if (bytes.empty()) return;
  Pipe& p = c.pipe[w];
  p.unsent.append(bytes.data(), bytes.size());
  p.expected.append(bytes.data(), bytes.size());
  p.accepted += bytes.size();
  p.kernel_bytes += bytes.size();
  ScheduleTransmit(c, w, now_ns_);
}

void SimCore::ScheduleDrain(Connection& c, int w) {
  if (c.ep[w].drain_scheduled) return;
  c.ep[w].drain_scheduled = true;
  const uint64_t id = c.id;
  Schedule(now_ns_, [this, id, w] { Drain(id, w); });
}

void SimCore::Drain(uint64_t id, int w) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Endpoint& ep = c->ep[w];
  ep.drain_scheduled = false;
  if (ep.closed || ep.dead || !ep.broken.ok() ||
      ep.phase != Endpoint::Phase::kConnected || ep.pending.empty()) {
    return;
  }
  Pipe& p = c->pipe[w];
  const size_t cap = options_.chaos.kernel_buffer_bytes;
  const size_t space = p.kernel_bytes < cap ? cap - p.kernel_bytes : 0;
  size_t n = std::min(space, ep.pending.size());
  if (n == 0) return;  // a read makes room and drains again
  if (rng_.Bernoulli(options_.chaos.partial_write_probability)) {
    const size_t offered = n;
    n = static_cast<size_t>(rng_.Uniform(n));
    TraceEvent(TraceKind::kFaultPartialWrite, Dir(*c, w), n, offered);
    assertions_.RecordSometimes("fault.partial_write", true);
    // Room is left: the rest moves on a later turn.
    ScheduleDrain(*c, w);
    if (n == 0) return;
  }
  Accept(*c, w, absl::MakeConstSpan(ep.pending.data(), n));
  ep.pending.erase(0, n);
  TraceEvent(TraceKind::kDrain, Dir(*c, w), n);
  MaybeFin(*c, w);
  // Last: the handler may write more, close, or destroy the stream.
  if (ep.handler != nullptr) ep.handler->OnWritten(n);
}

void SimCore::MaybeFin(Connection& c, int w) {
  Endpoint& ep = c.ep[w];
  if (!ep.shutdown_requested || ep.phase != Endpoint::Phase::kConnected ||
      !ep.pending.empty() || !ep.broken.ok()) {
    return;
  }
  Pipe& p = c.pipe[w];
  if (p.dead || p.fin_pending) return;
  p.fin_pending = true;
  ScheduleTransmit(c, w, now_ns_);
}

void SimCore::ScheduleWriteError(Connection& c, int side) {
  const uint64_t id = c.id;
  Schedule(now_ns_, [this, id, side] {
    Connection* conn = Find(id);
    if (conn == nullptr) return;
    Endpoint& ep = conn->ep[side];
    if (ep.closed || ep.dead || ep.handler == nullptr) return;
    TraceEvent(TraceKind::kWriteError, Dir(*conn, side));
    ep.handler->OnWriteError(ep.broken);
  });
}

// ---------------------------------------------------------------- the wire

void SimCore::HashWire(uint64_t dir, absl::string_view bytes) {
  // Whole words with one multiply each (as the trace hash does), the tail
  // zero-padded, then the size: cheap next to copying the segment.
  auto mix = [](uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
  };
  uint64_t h = mix(wire_hash_, dir);
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = mix(h, w);
  }
  if (i < bytes.size()) {
    uint64_t w = 0;
    std::memcpy(&w, bytes.data() + i, bytes.size() - i);
    h = mix(h, w);
  }
  wire_hash_ = mix(h, bytes.size());
}

int64_t SimCore::DrawLatency() {
  const LatencyConfig& l = options_.chaos.latency;
  absl::Duration d =
      l.typical > l.min ? rng_.UniformDuration(l.min, l.typical) : l.min;
  if (rng_.Bernoulli(l.tail_probability)) {
    d += rng_.Exponential(l.tail_mean, l.max);
    assertions_.RecordSometimes("fault.latency_tail", true);
  }
  return absl::ToInt64Nanoseconds(std::min(d, l.max));
}

void SimCore::ScheduleTransmit(Connection& c, int w, int64_t at) {
  Pipe& p = c.pipe[w];
  if (p.transmit_scheduled || p.dead) return;
  p.transmit_scheduled = true;
  const uint64_t id = c.id;
  Schedule(at, [this, id, w] { Transmit(id, w); });
}

void SimCore::Transmit(uint64_t id, int w) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Pipe& p = c->pipe[w];
  p.transmit_scheduled = false;
  if (p.dead) return;
  if (now_ns_ < p.clogged_until) {
    ScheduleTransmit(*c, w, p.clogged_until);
    return;
  }
  const ChaosConfig& chaos = options_.chaos;
  if (!p.unsent.empty()) {
    const bool draw = !p.released;
    p.released = false;
    if (draw && rng_.Bernoulli(chaos.reset_probability)) {
      TraceEvent(TraceKind::kFaultReset, id);
      assertions_.RecordSometimes("fault.reset", true);
      ResetConnection(*c, absl::UnavailableError(
                              "connection reset (ECONNRESET, simulated)"));
      return;
    }
    if (draw && rng_.Bernoulli(chaos.half_close_probability)) {
      TraceEvent(TraceKind::kFaultHalfClose, Dir(*c, w));
      assertions_.RecordSometimes("fault.half_close", true);
      HalfClose(*c, w);
    }
    const bool stall = draw && rng_.Bernoulli(chaos.stall_probability);
    const bool clog = !stall && draw && rng_.Bernoulli(chaos.clog_probability);
    if (stall || clog) {
      const int64_t until =
          now_ns_ + absl::ToInt64Nanoseconds(
                        rng_.UniformDuration(chaos.stall_min, chaos.stall_max));
      TraceEvent(TraceKind::kFaultStall, id, stall ? 3 : (1u << w),
                 until - now_ns_);
      assertions_.RecordSometimes(stall ? "fault.stall" : "fault.clog", true);
#ifdef MOONPOOL_PLANTED_BUGS
      // Planted bug (the simulator's): a stall (or clog) resets the
      // connection instead of holding its bytes, without recording a reset:
      // a stalled link treated as a closed one.
      if (moonpool_planted::Active("sim_stall_is_close")) {
        ResetConnection(*c, absl::UnavailableError(
                                "connection closed on stall (planted bug)"));
        return;
      }
#endif
      for (int d = 0; d < 2; ++d) {
        if (!stall && d != w) continue;
        Pipe& q = c->pipe[d];
        q.clogged_until = std::max(q.clogged_until, until);
        q.released = true;
      }
      // Held bytes leave when the stall ends, with no new fault draw.
      ScheduleTransmit(*c, w, until);
      return;
    }
    std::string segment = std::move(p.unsent);
    p.unsent.clear();
    const uint64_t offset = p.sent;
    p.sent += segment.size();
    if (rng_.Bernoulli(chaos.bit_flip_probability)) {
      const int flips = static_cast<int>(
          rng_.UniformInRange(1, std::max(1, chaos.max_bit_flips)));
      absl::InlinedVector<std::pair<uint64_t, uint8_t>, 8> made;
      for (int i = 0; i < flips; ++i) {
        const uint64_t pos = rng_.Uniform(segment.size());
        const auto mask = static_cast<uint8_t>(1u << rng_.Uniform(8));
        segment[pos] = static_cast<char>(segment[pos] ^ mask);
        made.emplace_back(offset + pos, mask);
        TraceEvent(TraceKind::kFaultBitFlip, Dir(*c, w), offset + pos, mask);
      }
      // The checker's list is in offset order; equal offsets fold.
      std::sort(made.begin(), made.end());
      for (const auto& [off, mask] : made) {
        if (!p.flips.empty() && p.flips.back().first == off) {
          p.flips.back().second ^= mask;
        } else {
          p.flips.emplace_back(off, mask);
        }
      }
      assertions_.RecordSometimes("fault.bit_flip", true);
    }
    if (planted_ != PlantedFault::kNone && segment.size() >= 2) {
      const size_t pos = segment.size() / 2;
      switch (planted_) {
        case PlantedFault::kDropByte:
          segment.erase(pos, 1);
          break;
        case PlantedFault::kDuplicateByte:
          segment.insert(pos, 1, segment[pos]);
          break;
        case PlantedFault::kFlipUnrecorded:
          segment[pos] = static_cast<char>(segment[pos] ^ 0x10);
          break;
        case PlantedFault::kNone:
          break;
      }
      planted_ = PlantedFault::kNone;
    }
    const int64_t arrival = std::max(now_ns_ + DrawLatency(), p.last_arrival);
    p.last_arrival = arrival;
    HashWire(Dir(*c, w), segment);
    TraceEvent(TraceKind::kSegmentSent, Dir(*c, w), segment.size(), arrival);
    Schedule(arrival, [this, id, w, seg = std::move(segment)]() mutable {
      Arrive(id, w, std::move(seg));
    });
  }
  if (p.unsent.empty() && p.fin_pending && !p.fin_sent && !p.dead) {
    p.fin_sent = true;
    const int64_t arrival = std::max(now_ns_ + DrawLatency(), p.last_arrival);
    p.last_arrival = arrival;
    TraceEvent(TraceKind::kFinSent, Dir(*c, w));
    Schedule(arrival, [this, id, w] { FinArrive(id, w); });
  }
}

void SimCore::Arrive(uint64_t id, int w, std::string segment) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Pipe& p = c->pipe[w];
  if (p.dead) return;
  TraceEvent(TraceKind::kSegmentArrived, Dir(*c, w), segment.size());
  const int r = 1 - w;
  Endpoint& reader = c->ep[r];
  if (reader.closed) {
    // Bytes for a closed socket: its kernel answers with RST.
    p.kernel_bytes = 0;
    ResetEndpoint(*c, w,
                  absl::UnavailableError(
                      "connection reset by peer (ECONNRESET, simulated)"));
    p.dead = true;
    return;
  }
  if (p.recv_head > 0 && p.recv_head == p.recv.size()) {
    p.recv.clear();
    p.recv_head = 0;
  }
  p.recv.append(segment);
  ScheduleRead(*c, r);
}

void SimCore::FinArrive(uint64_t id, int w) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Pipe& p = c->pipe[w];
  if (p.dead) return;
  p.fin_arrived = true;
  ScheduleRead(*c, 1 - w);
}

// ---------------------------------------------------------------- reads

void SimCore::ScheduleRead(Connection& c, int r) {
  Endpoint& ep = c.ep[r];
  if (ep.read_scheduled || !ep.exists) return;
  ep.read_scheduled = true;
  const uint64_t id = c.id;
  Schedule(now_ns_, [this, id, r] { ServiceRead(id, r); });
}

void SimCore::ServiceRead(uint64_t id, int r) {
  Connection* c = Find(id);
  if (c == nullptr) return;
  Endpoint& ep = c->ep[r];
  ep.read_scheduled = false;
  if (ep.closed || ep.dead || ep.phase != Endpoint::Phase::kConnected ||
      !ep.want_reading || ep.handler == nullptr || ep.read_ended) {
    return;
  }
  const int w = 1 - r;
  Pipe& p = c->pipe[w];
  if (!ep.read_error.ok()) {
    ep.read_ended = true;
    ep.want_reading = false;
    TraceEvent(TraceKind::kReadError, Dir(*c, r));
    ep.handler->OnReadEnd(ep.read_error);
    return;
  }
  const size_t available = p.recv.size() - p.recv_head;
  if (available > 0) {
    absl::Span<char> span = ep.handler->ReadBuffer(options_.read_buffer_bytes);
    assert(!span.empty() && "StreamHandler::ReadBuffer returned empty span");
    size_t n = std::min(span.size(), available);
    if (n > 1 && rng_.Bernoulli(options_.chaos.short_read_probability)) {
      const size_t full = n;
      n = 1 + static_cast<size_t>(rng_.Uniform(n - 1));
      TraceEvent(TraceKind::kFaultShortRead, Dir(*c, w), n, full);
      assertions_.RecordSometimes("fault.short_read", true);
    }
    std::memcpy(span.data(), p.recv.data() + p.recv_head, n);
    CheckDelivered(*c, w, absl::MakeConstSpan(p.recv.data() + p.recv_head, n));
    p.recv_head += n;
    if (p.recv_head == p.recv.size()) {
      p.recv.clear();
      p.recv_head = 0;
    }
    p.kernel_bytes = n < p.kernel_bytes ? p.kernel_bytes - n : 0;
    // Room in the writer's kernel: its queue moves on.
    if (!c->ep[w].pending.empty()) ScheduleDrain(*c, w);
    if (p.recv.size() > p.recv_head || p.fin_arrived) ScheduleRead(*c, r);
    TraceEvent(TraceKind::kRead, Dir(*c, w), n);
    ep.handler->OnRead(n);
    return;
  }
  if (p.fin_arrived) {
    ep.read_ended = true;
    ep.want_reading = false;
    CheckEnd(*c, w);
    TraceEvent(TraceKind::kEof, Dir(*c, w));
    ep.handler->OnReadEnd(absl::OkStatus());
  }
}

// ---------------------------------------------------------------- faults

void SimCore::ResetEndpoint(Connection& c, int side,
                            const absl::Status& status) {
  Endpoint& ep = c.ep[side];
  if (!ep.exists || ep.closed || ep.dead) return;
  if (ep.broken.ok()) ep.broken = status;
  if (ep.phase == Endpoint::Phase::kConnecting) {
    const uint64_t id = c.id;
    Schedule(now_ns_, [this, id, status] { ConnectDone(id, status); });
    return;
  }
  const bool had_pending = !ep.pending.empty();
  ep.pending.clear();
  if (had_pending) ScheduleWriteError(c, side);
  if (!ep.read_ended && ep.read_error.ok()) {
    ep.read_error = status;
    ScheduleRead(c, side);
  }
}

void SimCore::ResetConnection(Connection& c, const absl::Status& status) {
  for (Pipe& p : c.pipe) {
    // Bytes in flight are lost with the connection: not a violation, the
    // stream no longer reports itself open.
    p.dead = true;
    p.unsent.clear();
    p.recv.clear();
    p.recv_head = 0;
    p.expected.clear();
    p.expected_head = 0;
    p.flips.clear();
    p.kernel_bytes = 0;
  }
  ResetEndpoint(c, 0, status);
  ResetEndpoint(c, 1, status);
}

void SimCore::HalfClose(Connection& c, int w) {
  Endpoint& ep = c.ep[w];
  const absl::Status status =
      absl::UnavailableError("broken pipe (EPIPE, simulated half-close)");
  if (ep.broken.ok()) ep.broken = status;
  if (!ep.pending.empty()) {
    ep.pending.clear();
    ScheduleWriteError(c, w);
  }
  // What the kernel took still arrives, then end of stream.
  c.pipe[w].fin_pending = true;
}

absl::Status SimCore::KillHost(absl::string_view ip) {
  SimHost* facade = FindHost(ip);
  if (facade == nullptr) {
    return absl::NotFoundError(absl::StrCat("no host ", ip));
  }
  HostState* h = hosts_[facade->id()].get();
  if (!h->up) return absl::OkStatus();
  h->up = false;
  ++h->incarnation;
  TraceEvent(TraceKind::kHostKilled, h->id);
  assertions_.RecordSometimes("fault.host_killed", true);
  for (auto& [port, listener] : h->listeners) {
    listener->closed = true;
    if (listener->alive_flag == nullptr) listener->on_accept = nullptr;
  }
  h->listeners.clear();
  const absl::Status reset = absl::UnavailableError(
      "connection reset by peer (ECONNRESET, simulated: host killed)");
  for (auto& [id, conn] : connections_) {
    Connection& c = *conn;
    bool touched = false;
    for (int s = 0; s < 2; ++s) {
      Endpoint& ep = c.ep[s];
      if (ep.exists && ep.host == h && !ep.closed && !ep.dead) {
        ep.dead = true;
        ep.handler = nullptr;
        ep.on_connected = nullptr;
        ep.pending.clear();
        touched = true;
      }
    }
    if (touched) {
      ResetConnection(c, reset);
      MaybeReap(c);
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- checker

void SimCore::Violation(Connection& c, int w, std::string what) {
  Pipe& p = c.pipe[w];
  if (p.violated) return;  // the first one says it; the rest are echoes
  p.violated = true;
  violations_.push_back(IntegrityViolation{Now(), c.id, w, std::move(what)});
  assertions_.RecordAlways("sim.stream_integrity", false,
                           violations_.back().ToString());
}

void SimCore::CheckDelivered(Connection& c, int w,
                             absl::Span<const char> bytes) {
  Pipe& p = c.pipe[w];
  const size_t have = p.expected.size() - p.expected_head;
  // Fast path, nearly always taken: every byte was written and no recorded
  // flip falls in the span, so one comparison checks it all.
  while (!p.flips.empty() && p.flips.front().first < p.delivered) {
    p.flips.pop_front();
  }
  const bool no_flip_in_span =
      p.flips.empty() || p.flips.front().first >= p.delivered + bytes.size();
  const bool all_match =
      bytes.size() <= have && no_flip_in_span &&
      std::memcmp(bytes.data(), p.expected.data() + p.expected_head,
                  bytes.size()) == 0;
  for (size_t i = 0; !all_match && i < bytes.size(); ++i) {
    const uint64_t offset = p.delivered + i;
    if (i >= have) {
      Violation(c, w,
                absl::StrFormat("byte at offset %d delivered but never written "
                                "(duplicated or invented); %d written",
                                offset, p.accepted));
      break;
    }
    uint8_t mask = 0;
    while (!p.flips.empty() && p.flips.front().first < offset) {
      p.flips.pop_front();
    }
    if (!p.flips.empty() && p.flips.front().first == offset) {
      mask = p.flips.front().second;
    }
    const auto got = static_cast<uint8_t>(bytes[i]);
    const auto want = static_cast<uint8_t>(p.expected[p.expected_head + i]);
    if ((got ^ mask) != want) {
      Violation(c, w,
                absl::StrFormat("byte at offset %d is 0x%02x, written as "
                                "0x%02x (recorded flip mask 0x%02x): lost, "
                                "duplicated, reordered or corrupted",
                                offset, got, want, mask));
      break;
    }
  }
  const size_t n = std::min(bytes.size(), have);
  p.expected_head += n;
  p.delivered += bytes.size();
  if (p.expected_head == p.expected.size()) {
    p.expected.clear();
    p.expected_head = 0;
  } else if (p.expected_head > 64 * 1024 &&
             p.expected_head * 2 > p.expected.size()) {
    p.expected.erase(0, p.expected_head);
    p.expected_head = 0;
  }
}

void SimCore::CheckEnd(Connection& c, int w) {
  Pipe& p = c.pipe[w];
  if (p.dead || p.reader_gone) return;
  if (p.delivered != p.accepted) {
    Violation(c, w,
              absl::StrFormat("end of stream after %d bytes, but %d were "
                              "written: bytes lost",
                              p.delivered, p.accepted));
  }
}

}  // namespace moonpool::chaos::internal
