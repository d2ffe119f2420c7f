// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Address: where a Listener listens and a Client connects — the socket families Python's
// multiprocessing.connection.Listener takes on Linux:
//
//   Unix path      "/run/app.sock", "./rel.sock"      (AF_UNIX, a socket file)
//   abstract name  "\0name" or "@name"                (AF_UNIX, Linux abstract namespace)
//   TCP            "host:port", "[::1]:port"          (AF_INET/AF_INET6; port 0 = any free)
//
// Parse() reads these forms: a string starting with '\0' or '@' is abstract; one
// containing '/' is a path; "host:port" with a numeric port is TCP; anything else is a
// path in the current directory (write "./a:1" for a file whose name looks like TCP).
#ifndef SHMLINK_TRANSPORT_ADDRESS_H_
#define SHMLINK_TRANSPORT_ADDRESS_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <shmlink/expected.h>
#include <shmlink/transport_error.h>

namespace shmlink::transport {

enum class AddressFamily { kUnixPath, kUnixAbstract, kTcp };

struct Address {
  AddressFamily family = AddressFamily::kUnixPath;
  std::string path;   // kUnixPath: the file; kUnixAbstract: the name without the leading NUL
  std::string host;   // kTcp
  uint16_t port = 0;  // kTcp

  static Address UnixPath(std::string p) { return {AddressFamily::kUnixPath, std::move(p), {}, 0}; }
  static Address Abstract(std::string n) {
    return {AddressFamily::kUnixAbstract, std::move(n), {}, 0};
  }
  static Address Tcp(std::string h, uint16_t p) {
    return {AddressFamily::kTcp, {}, std::move(h), p};
  }

  // kInvalidAddress for an empty string, an over-long path (> 107 bytes), a bad port.
  [[nodiscard]] static Expected<Address> Parse(std::string_view text);

  bool is_unix() const noexcept { return family != AddressFamily::kTcp; }
  // Round-trips through Parse() ("@name" for abstract names).
  std::string ToString() const;
};

// Socket address storage for bind/connect. For kTcp the host is resolved with
// getaddrinfo (first result; "localhost" gives 127.0.0.1). any-thread.
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = 0;
  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
};
[[nodiscard]] Expected<SockAddr> ToSockAddr(const Address& address);
// The inverse, for getsockname()/getpeername() results (TCP ports read back after bind(0)).
Address FromSockAddr(const sockaddr* sa, socklen_t length);

}  // namespace shmlink::transport

#endif  // SHMLINK_TRANSPORT_ADDRESS_H_
