// ReplyStream<Item> is the client's end of a reply stream (DESIGN.md section
// 5, "Reply streams"), made by ClientTransport::CallStream: the items in
// order, then one end.
//
//   absl::StatusOr<ReplyStream<kv::ScanItem>> scan =
//       client.CallStream(server, kScan, request);
//   if (!scan.ok()) ...;                           // failed up front
//   while (true) {
//     absl::StatusOr<std::optional<CapnpReader<kv::ScanItem>>> next =
//         co_await scan->Next();
//     if (!next.ok()) ...;                         // ended by this Status
//     if (!next->has_value()) break;               // ended OK
//     Use(**next);
//   }
//
// Flow control: the server sends while the items it sent, and the client has
// not yet consumed, are below the window (StreamOptions::window_bytes, the
// stream's credit); Next hands items out and grants their bytes back once
// the consumed, not yet granted bytes reach half the window. So a consumer
// that stops calling Next holds at most the window (plus the one item that
// crossed it) in memory, and the server waits.
//
// Outcomes of the end, exactly one per stream: OK; the handler's Status; and
// as for a request (client_transport.h) DeadlineExceeded (the deadline bounds
// the whole stream), Unavailable, Aborted (the connection died: once an item
// has arrived a stream is never sent again, whatever its idempotency; before
// its first item it is, when idempotent), Cancelled (the transport closed),
// Unimplemented; InvalidArgument when an item does not decode (the items
// before it were delivered; the stream is cancelled).
//
// Destroying the stream before its end cancels the call: nothing more is
// delivered, and on a version 2 connection the server hears `cancel` and
// its handler's writes yield Cancelled.
//
// Ownership: move-only; it borrows the ClientTransport's Peer and must be
// destroyed (or have ended) before the transport. A task returned by Next
// borrows the stream: await it before destroying or moving the stream. One
// Next at a time. Loop's thread only.
#ifndef MOONPOOL_TRANSPORT_REPLY_STREAM_H_
#define MOONPOOL_TRANSPORT_REPLY_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "moonpool/driver/loop.h"
#include "moonpool/driver/peer.h"
#include "moonpool/driver/promise.h"
#include "moonpool/driver/task.h"
#include "moonpool/transport/codec.h"
#include "moonpool/transport/method.h"
#include "moonpool/transport/request_options.h"

namespace moonpool::transport {

// The settings of one CallStream: a request's, and the window.
struct StreamOptions : RequestOptions {
  // The stream's credit: item payload bytes the server may send ahead of the
  // consumer. Larger windows hide more round trips (a window should cover
  // the bandwidth-delay product) and cost that much memory at the client.
  // Must be positive.
  uint64_t window_bytes = uint64_t{256} << 10;
};

// What one stream saw, for tests and diagnostics.
struct ReplyStreamStats {
  uint64_t items = 0;             // delivered by Next
  uint64_t bytes = 0;             // their payload bytes
  uint64_t grants = 0;            // credit grants sent back
  size_t max_buffered_bytes = 0;  // most item bytes held at once
};

namespace internal {

// The state a ReplyStream shares with the Peer's callbacks: items received
// and not yet taken, the end, and the credit to grant back. Not API.
class StreamState {
 public:
  StreamState(driver::Loop& loop, uint64_t window)
      : loop_(loop), window_(window) {}
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  void Started(driver::Peer* peer, driver::PeerRequestId id) {
    peer_ = peer;
    id_ = id;
  }
  // The Peer's callbacks.
  void OnItem(absl::string_view payload) {
    buffered_bytes_ += payload.size();
    if (buffered_bytes_ > stats_.max_buffered_bytes) {
      stats_.max_buffered_bytes = buffered_bytes_;
    }
    items_.emplace_back(payload);
    Wake();
  }
  void OnEnd(const absl::Status& status) {
    end_ = status;
    Wake();
  }

  bool ready() const { return !items_.empty() || end_.has_value(); }
  bool has_items() const { return !items_.empty(); }
  bool ended() const { return end_.has_value(); }
  const absl::Status& end() const { return *end_; }
  // The next item's bytes; grants credit as half the window is consumed.
  // REQUIRES: !items_.empty().
  std::string TakeItem() {
    std::string item = std::move(items_.front());
    items_.pop_front();
    buffered_bytes_ -= item.size();
    ++stats_.items;
    stats_.bytes += item.size();
    ungranted_ += item.size();
    if (!end_.has_value() && ungranted_ >= (window_ + 1) / 2) {
      peer_->GrantCredit(id_, ungranted_);
      ungranted_ = 0;
      ++stats_.grants;
    }
    return item;
  }
  // Until ready(): the Future to await.
  driver::Future<void> Wait() {
    std::pair<driver::Promise<void>, driver::Future<void>> p =
        driver::MakePromise<void>(loop_);
    waiter_ = std::move(p.first);
    return std::move(p.second);
  }
  // Ends the stream here, with `status` (an item that does not decode), and
  // cancels it at the Peer.
  void Fail(absl::Status status) {
    if (!end_.has_value()) {
      peer_->Cancel(id_);
      end_ = std::move(status);
    }
    items_.clear();
    buffered_bytes_ = 0;
  }
  // The ReplyStream goes: cancels the call if it has not ended.
  void Abandon() {
    if (!end_.has_value() && peer_ != nullptr) peer_->Cancel(id_);
  }
  const ReplyStreamStats& stats() const { return stats_; }
  size_t buffered_bytes() const { return buffered_bytes_; }

 private:
  void Wake() {
    if (waiter_.valid() && !waiter_.fulfilled()) waiter_.Set();
  }

  driver::Loop& loop_;
  const uint64_t window_;
  driver::Peer* peer_ = nullptr;
  driver::PeerRequestId id_;
  std::deque<std::string> items_;
  size_t buffered_bytes_ = 0;
  uint64_t ungranted_ = 0;
  std::optional<absl::Status> end_;
  driver::Promise<void> waiter_;
  ReplyStreamStats stats_;
};

}  // namespace internal

template <MethodMessage Item>
class ReplyStream {
 public:
  using ItemIn = typename MethodTypes<Item>::In;
  // What Next yields: an item; std::nullopt at an OK end; or the Status
  // that ended the stream.
  using Next_t = absl::StatusOr<std::optional<ItemIn>>;

  ReplyStream(ReplyStream&&) noexcept = default;
  ReplyStream& operator=(ReplyStream&& other) noexcept {
    if (this != &other) {
      if (state_ != nullptr) state_->Abandon();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~ReplyStream() {
    if (state_ != nullptr) state_->Abandon();
  }

  // The next item, or the end (see the type Next_t). After the end, the same
  // end again, every time.
  driver::Task<Next_t> Next() {
    internal::StreamState& s = *state_;
    if (!s.ready()) (void)co_await s.Wait();
    co_return Take(s);
  }

  // Whether the end has been seen by the transport (items may still wait to
  // be taken before Next yields it).
  bool ended() const { return state_->ended(); }
  const ReplyStreamStats& stats() const { return state_->stats(); }
  // Item bytes received and not yet taken by Next.
  size_t buffered_bytes() const { return state_->buffered_bytes(); }

 private:
  friend class ClientTransport;
  explicit ReplyStream(std::unique_ptr<internal::StreamState> state)
      : state_(std::move(state)) {}

  Next_t Take(internal::StreamState& s) {
    if (s.has_items()) {
      std::string bytes = s.TakeItem();
      if constexpr (std::is_same_v<ItemIn, std::string>) {
        return std::optional<ItemIn>(std::move(bytes));
      } else {
        absl::StatusOr<ItemIn> item = Codec<ItemIn>::Decode(bytes);
        if (!item.ok()) {
          s.Fail(absl::InvalidArgumentError(absl::StrCat(
              "a stream item does not decode: ", item.status().message())));
          return s.end();
        }
        return std::optional<ItemIn>(std::move(*item));
      }
    }
    if (s.end().ok()) return std::optional<ItemIn>();
    return s.end();
  }

  std::unique_ptr<internal::StreamState> state_;
};

}  // namespace moonpool::transport

#endif  // MOONPOOL_TRANSPORT_REPLY_STREAM_H_
