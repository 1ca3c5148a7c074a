// UvLoop is the production Loop (loop.h), on libuv. It is the only part of
// moonpool that includes uv.h, and it does so only in its .cc files.
//
// What it adds to the Loop contract:
//   - Writes try the kernel at once (uv_try_write) and queue the rest as one
//     gathered write; bytes written while a write is in flight are coalesced
//     into the next one.
//   - Reads go into the buffer the StreamHandler provides (zero copy into a
//     protocol's receive buffer).
//   - A closed handle never calls back after Close; its memory is freed in
//     libuv's close callback.
//   - PostFromAnyThread is the one call allowed from another thread (uv_async).
//
// Example:
//
//   moonpool::driver::UvLoop loop;   // or UvLoop(UvLoopOptions{.seed = 42})
//   auto listener = loop.Listen(Address::Loopback(0), {}, on_accept);
//   loop.Run();
#ifndef MOONPOOL_DRIVER_UV_LOOP_H_
#define MOONPOOL_DRIVER_UV_LOOP_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "moonpool/driver/loop.h"

namespace moonpool::driver {

struct UvLoopOptions {
  // Seed of Random(); nullopt draws one from std::random_device.
  std::optional<uint64_t> seed;
  // Size suggested to StreamHandler::ReadBuffer.
  size_t read_buffer_bytes = 64 * 1024;
};

class UvLoop final : public Loop {
 public:
  explicit UvLoop(UvLoopOptions options = {});
  // Destroys suspended tasks, closes what is left and runs libuv until every
  // handle's close callback has run: nothing leaks.
  ~UvLoop() override;

  absl::Time Now() const override;
  uint64_t Random() override;
  std::unique_ptr<Timer> CreateTimer(
      absl::AnyInvocable<void()> on_fire) override;
  void Post(absl::AnyInvocable<void()> fn) override;
  absl::StatusOr<std::unique_ptr<Listener>> Listen(
      const Address& address, const ListenOptions& options,
      AcceptCallback on_accept) override;
  absl::StatusOr<std::unique_ptr<Stream>> Connect(
      const Address& address, ConnectCallback on_connected) override;
  void Run() override;
  bool RunUntil(absl::FunctionRef<bool()> done, absl::Time deadline) override;
  void Stop() override;

  // Runs `fn` on the loop's thread on a later turn. The only UvLoop call
  // that is safe from any thread.
  void PostFromAnyThread(absl::AnyInvocable<void()> fn);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace moonpool::driver

#endif  // MOONPOOL_DRIVER_UV_LOOP_H_
