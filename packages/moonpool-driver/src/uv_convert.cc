// Translations between libuv's vocabulary and moonpool's: libuv error codes
// to absl::Status (the table is in uv_internal.h), and struct sockaddr to
// Address.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "uv_internal.h"

namespace moonpool::driver::internal {

absl::Status UvStatus(int uv_error, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", uv_strerror(uv_error),
                                           " (", uv_err_name(uv_error), ")");
  switch (uv_error) {
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_EPIPE:
    case UV_ETIMEDOUT:
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
    case UV_ENETDOWN:
    case UV_ENOTCONN:
    case UV_EADDRNOTAVAIL:
    case UV_EAI_AGAIN:
      return absl::UnavailableError(message);
    case UV_EADDRINUSE:
      return absl::AlreadyExistsError(message);
    case UV_EACCES:
    case UV_EPERM:
      return absl::PermissionDeniedError(message);
    case UV_EINVAL:
    case UV_EAFNOSUPPORT:
      return absl::InvalidArgumentError(message);
    case UV_ECANCELED:
      return absl::CancelledError(message);
    case UV_EMFILE:
    case UV_ENFILE:
    case UV_ENOMEM:
    case UV_ENOBUFS:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::UnknownError(message);
  }
}

void ToSockaddr(const Address& address, sockaddr_storage* storage) {
  std::memset(storage, 0, sizeof(*storage));
  if (address.family() == Address::Family::kIpv4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(address.port());
    std::memcpy(&sin->sin_addr, address.bytes().data(), 4);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(address.port());
    std::memcpy(&sin6->sin6_addr, address.bytes().data(), 16);
  }
}

Address FromSockaddr(const sockaddr_storage& storage) {
  if (storage.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&storage);
    std::array<uint8_t, 4> bytes;
    std::memcpy(bytes.data(), &sin->sin_addr, 4);
    return Address::Ipv4(bytes, ntohs(sin->sin_port));
  }
  if (storage.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    std::array<uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &sin6->sin6_addr, 16);
    return Address::Ipv6(bytes, ntohs(sin6->sin6_port));
  }
  return Address();
}

Address LocalAddressOf(const uv_tcp_t* tcp) {
  sockaddr_storage storage;
  int len = sizeof(storage);
  if (uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&storage), &len) <
      0) {
    return Address();
  }
  return FromSockaddr(storage);
}

Address PeerAddressOf(const uv_tcp_t* tcp) {
  sockaddr_storage storage;
  int len = sizeof(storage);
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&storage), &len) <
      0) {
    return Address();
  }
  return FromSockaddr(storage);
}

}  // namespace moonpool::driver::internal
