#include "faulty_stream.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "moonpool/chaos/faulty_loop.h"

namespace moonpool::chaos::internal {

FaultyStream::FaultyStream(FaultyLoop& loop, const driver::Address& peer)
    : loop_(loop),
      peer_(peer),
      flush_timer_(loop.inner().CreateTimer([this] { Flush(); })),
      fault_timer_(loop.inner().CreateTimer([this] { DeliverFault(); })) {}

FaultyStream::~FaultyStream() {
  Close();
  if (dead_ != nullptr) *dead_ = true;
}

void FaultyStream::Attach(std::unique_ptr<driver::Stream> inner,
                          bool connected) {
  inner_ = std::move(inner);
  inner_->SetHandler(this);
  connected_ = connected;
}

void FaultyStream::OnConnected(const absl::Status& status) {
  if (status.ok()) {
    connected_ = true;
    return;
  }
  // As UvLoop: the callback alone reports it; what was queued is dropped.
  connect_failed_ = true;
  broken_ = status;
  held_.clear();
  flush_timer_->Stop();
}

void FaultyStream::Refuse(driver::ConnectCallback on_connected) {
  refused_callback_ = std::move(on_connected);
  fault_timer_->Start(loop_.Now());
}

template <typename F>
bool FaultyStream::CallHandler(F&& f) {
  bool dead = false;
  bool* outer = dead_;
  dead_ = &dead;
  std::forward<F>(f)();
  if (dead) {
    if (outer != nullptr) *outer = true;
    return false;
  }
  dead_ = outer;
  return !closed_;
}

void FaultyStream::SetHandler(driver::StreamHandler* handler) {
  handler_ = handler;
}

absl::Status FaultyStream::StartReading() {
  if (closed_) return absl::FailedPreconditionError("stream is closed");
  if (connect_failed_) return broken_;
  reading_ = true;
  if (reset_) {
    // Reading a reset connection ends at once, on a later turn.
    if (!read_ended_) fault_timer_->Start(loop_.Now());
    return absl::OkStatus();
  }
  if (inner_ == nullptr) return absl::OkStatus();  // refused or hung connect
  return inner_->StartReading();
}

void FaultyStream::StopReading() {
  reading_ = false;
  if (inner_ != nullptr && !reset_ && !closed_) inner_->StopReading();
}

absl::Duration FaultyStream::DrawDelay() {
  const ChaosConfig& c = loop_.chaos_;
  SimRandom& rng = loop_.rng_;
  if (rng.Bernoulli(c.stall_probability + c.clog_probability)) {
    return rng.UniformDuration(c.stall_min, std::max(c.stall_min, c.stall_max));
  }
  if (rng.Bernoulli(c.latency.tail_probability)) {
    return rng.Exponential(c.latency.tail_mean, c.latency.max);
  }
  return absl::ZeroDuration();
}

void FaultyStream::Hold(absl::Span<const char> bytes) {
  held_.append(bytes.data(), bytes.size());
  ArmFlush();
}

void FaultyStream::ArmFlush() {
  if (inner_ == nullptr || reset_ || connect_failed_) return;
  flush_timer_->Start(std::max(hold_until_, loop_.Now()));
}

absl::StatusOr<size_t> FaultyStream::Write(absl::Span<const char> bytes) {
  if (closed_ || shutdown_) {
    return absl::FailedPreconditionError("write after shutdown or close");
  }
  if (!broken_.ok()) return broken_;
  if (bytes.empty()) return 0;
  FaultCounts& faults = loop_.faults_;
  SimRandom& rng = loop_.rng_;
  ++faults.writes;
  if (connected_ && rng.Bernoulli(loop_.chaos_.reset_probability)) {
    // The bytes are taken (queued) and die with the connection.
    held_.append(bytes.data(), bytes.size());
    BeginReset();
    return 0;
  }
  if (absl::Duration d = DrawDelay(); d > absl::ZeroDuration()) {
    ++faults.delays;
    hold_until_ = std::max(hold_until_, loop_.Now() + d);
    Hold(bytes);
    return 0;
  }
  // Behind held bytes, or before a connection exists: queue, in order.
  if (!held_.empty() || inner_ == nullptr) {
    Hold(bytes);
    return 0;
  }
  size_t n = bytes.size();
  if (n > 1 && rng.Bernoulli(loop_.chaos_.partial_write_probability)) {
    ++faults.partial_writes;
    n = 1 + static_cast<size_t>(rng.Uniform(n - 1));
  }
  absl::StatusOr<size_t> taken = inner_->Write(bytes.first(n));
  if (!taken.ok()) {
    broken_ = taken.status();
    return taken;
  }
  if (n < bytes.size()) Hold(bytes.subspan(n));
  return taken;
}

size_t FaultyStream::queued_write_bytes() const {
  size_t inner = 0;
  if (inner_ != nullptr && !reset_ && !closed_) {
    inner = inner_->queued_write_bytes();
  }
  return held_.size() + inner;
}

void FaultyStream::Shutdown() {
  if (closed_ || shutdown_) return;
  shutdown_ = true;
  if (inner_ == nullptr || reset_ || connect_failed_) return;
  if (held_.empty()) {
    inner_->Shutdown();
  } else {
    shutdown_pending_ = true;
  }
}

void FaultyStream::Close() {
  if (closed_) return;
  closed_ = true;
  flush_timer_->Stop();
  fault_timer_->Stop();
  held_.clear();
  refused_callback_ = nullptr;
  if (inner_ != nullptr) inner_->Close();
}

const driver::Address& FaultyStream::local_address() const {
  return inner_ != nullptr ? inner_->local_address() : local_;
}

const driver::Address& FaultyStream::peer_address() const {
  return inner_ != nullptr ? inner_->peer_address() : peer_;
}

void FaultyStream::Flush() {
  if (closed_ || reset_ || connect_failed_ || inner_ == nullptr ||
      held_.empty()) {
    return;
  }
  if (loop_.Now() < hold_until_) {  // a later delay moved the release
    flush_timer_->Start(hold_until_);
    return;
  }
  size_t n = held_.size();
  if (n > 1 && loop_.rng_.Bernoulli(loop_.chaos_.partial_write_probability)) {
    ++loop_.faults_.partial_writes;
    n = 1 + static_cast<size_t>(loop_.rng_.Uniform(n - 1));
  }
  absl::StatusOr<size_t> taken =
      inner_->Write(absl::MakeConstSpan(held_).first(n));
  if (!taken.ok()) {
    broken_ = taken.status();
    held_.clear();
    if (!write_failed_ && handler_ != nullptr) {
      write_failed_ = true;
      CallHandler([&] { handler_->OnWriteError(broken_); });
    }
    return;
  }
  held_.erase(0, n);
  if (!held_.empty()) {
    flush_timer_->Start(loop_.Now());
  } else if (shutdown_pending_) {
    shutdown_pending_ = false;
    inner_->Shutdown();
  }
  // The user was told these bytes were queued; the inner stream reports
  // the rest of them itself, through OnWritten below.
  if (*taken > 0) CallHandler([&] { handler_->OnWritten(*taken); });
}

void FaultyStream::BeginReset() {
  ++loop_.faults_.resets;
  reset_ = true;
  broken_ = absl::UnavailableError(absl::StrCat(
      "connection to ", peer_address().ToString(), " reset (injected fault)"));
  reset_had_queued_ =
      !held_.empty() || (inner_ != nullptr && inner_->queued_write_bytes() > 0);
  held_.clear();
  flush_timer_->Stop();
  // Closed, not destroyed: this may run inside the inner stream's callback.
  if (inner_ != nullptr) inner_->Close();
  fault_timer_->Start(loop_.Now());
}

void FaultyStream::DeliverFault() {
  if (closed_) return;
  if (refused_callback_) {
    connect_failed_ = true;
    broken_ = absl::UnavailableError(
        absl::StrCat("connect to ", peer_.ToString(),
                     ": connection refused (injected fault)"));
    held_.clear();
    driver::ConnectCallback callback = std::move(refused_callback_);
    refused_callback_ = nullptr;
    callback(broken_);  // may destroy this stream: the last thing done
    return;
  }
  if (!reset_ || handler_ == nullptr) return;
  if (reset_had_queued_ && !write_failed_) {
    write_failed_ = true;
    if (!CallHandler([&] { handler_->OnWriteError(broken_); })) return;
  }
  if (reading_ && !read_ended_) {
    read_ended_ = true;
    CallHandler([&] { handler_->OnReadEnd(broken_); });
  }
}

absl::Span<char> FaultyStream::ReadBuffer(size_t suggested) {
  absl::Span<char> span = handler_->ReadBuffer(suggested);
  short_read_ = false;
  if (span.size() > 1 &&
      loop_.rng_.Bernoulli(loop_.chaos_.short_read_probability)) {
    short_read_ = true;
    span = span.first(1 +
                      static_cast<size_t>(loop_.rng_.Uniform(span.size() - 1)));
  }
  return span;
}

void FaultyStream::OnRead(size_t n) {
  if (short_read_) {
    short_read_ = false;
    ++loop_.faults_.short_reads;
  }
  const bool reset = loop_.rng_.Bernoulli(loop_.chaos_.reset_probability);
  if (!CallHandler([&] { handler_->OnRead(n); })) return;
  if (reset && !reset_) BeginReset();
}

void FaultyStream::OnReadEnd(absl::Status status) {
  read_ended_ = true;
  CallHandler([&] { handler_->OnReadEnd(std::move(status)); });
}

void FaultyStream::OnWritten(size_t n) {
  CallHandler([&] { handler_->OnWritten(n); });
}

void FaultyStream::OnWriteError(absl::Status status) {
  broken_ = status;
  write_failed_ = true;
  held_.clear();
  CallHandler([&] { handler_->OnWriteError(std::move(status)); });
}

}  // namespace moonpool::chaos::internal
