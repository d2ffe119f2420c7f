// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>

#include <shmlink/address.h>

namespace shmlink::transport {
namespace {
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;  // 107 + NUL
}  // namespace

Expected<Address> Address::Parse(std::string_view text) {
  if (text.empty()) return TransportErrc::kInvalidAddress;
  if (text[0] == '\0' || text[0] == '@') {
    if (text.size() < 2 || text.size() - 1 > kMaxUnixPath) return TransportErrc::kInvalidAddress;
    return Abstract(std::string(text.substr(1)));
  }
  if (text.find('/') == std::string_view::npos) {
    const size_t colon = text.rfind(':');
    if (colon != std::string_view::npos && colon > 0 && colon + 1 < text.size()) {
      std::string_view host = text.substr(0, colon);
      std::string_view port = text.substr(colon + 1);
      unsigned value = 0;
      auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
      if (ec == std::errc() && ptr == port.data() + port.size()) {
        if (value > 65535) return TransportErrc::kInvalidAddress;
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
          host = host.substr(1, host.size() - 2);
        }
        return Tcp(std::string(host), static_cast<uint16_t>(value));
      }
    }
  }
  if (text.size() > kMaxUnixPath || text.find('\0') != std::string_view::npos) {
    return TransportErrc::kInvalidAddress;
  }
  return UnixPath(std::string(text));
}

std::string Address::ToString() const {
  switch (family) {
    case AddressFamily::kUnixPath:
      if (path.empty()) return "";  // an unnamed (client) socket
      return path.find('/') == std::string::npos ? "./" + path : path;
    case AddressFamily::kUnixAbstract:
      return "@" + path;
    case AddressFamily::kTcp:
      return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
             std::to_string(port);
  }
  return {};
}

Expected<SockAddr> ToSockAddr(const Address& a) {
  SockAddr out;
  if (a.is_unix()) {
    if (a.path.empty() || a.path.size() > kMaxUnixPath) return TransportErrc::kInvalidAddress;
    auto* un = reinterpret_cast<sockaddr_un*>(&out.storage);
    un->sun_family = AF_UNIX;
    if (a.family == AddressFamily::kUnixAbstract) {
      un->sun_path[0] = '\0';
      std::memcpy(un->sun_path + 1, a.path.data(), a.path.size());
      out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + a.path.size());
    } else {
      std::memcpy(un->sun_path, a.path.data(), a.path.size());
      out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.path.size() + 1);
    }
    out.family = AF_UNIX;
    return out;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string host = a.host.empty() ? "localhost" : a.host;
  const std::string port = std::to_string(a.port);
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return TransportErrc::kInvalidAddress;
  }
  // Prefer IPv4 (Python's ('localhost', port) binds AF_INET).
  const addrinfo* pick = res;
  for (const addrinfo* p = res; p != nullptr; p = p->ai_next) {
    if (p->ai_family == AF_INET) {
      pick = p;
      break;
    }
  }
  std::memcpy(&out.storage, pick->ai_addr, pick->ai_addrlen);
  out.length = pick->ai_addrlen;
  out.family = pick->ai_family;
  ::freeaddrinfo(res);
  return out;
}

Address FromSockAddr(const sockaddr* sa, socklen_t length) {
  if (sa->sa_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(sa);
    const size_t n =
        length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
    if (n > 0 && un->sun_path[0] == '\0')
      return Address::Abstract(std::string(un->sun_path + 1, n - 1));
    return Address::UnixPath(std::string(un->sun_path, strnlen(un->sun_path, n)));
  }
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
  }
  return Address::Tcp(host, port);
}

}  // namespace shmlink::transport
