// OpenSSL's thread-local error queue, read into a message.
#ifndef MOONPOOL_DRIVER_SRC_TLS_ERRORS_H_
#define MOONPOOL_DRIVER_SRC_TLS_ERRORS_H_

#include <string>

namespace moonpool::driver::internal {

// Empties this thread's OpenSSL error queue, returning its reasons joined
// with "; " ("unknown error" when it was empty).
std::string TakeOpenSslErrors();

}  // namespace moonpool::driver::internal

#endif  // MOONPOOL_DRIVER_SRC_TLS_ERRORS_H_
