// Copyright shmlink authors. SPDX-License-Identifier: MIT
// The examples as programs: echo_server with the seed's stock-Python client (unchanged
// but for the port) and with echo_client over shared memory.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/test_util.h"
#include "tests/transport/transport_test_util.h"

namespace shmlink::transport {
namespace {

using namespace std::chrono_literals;
using shmlink::testing::Child;

const char* kServer = "examples/echo_server/echo_server";
const char* kClient = "examples/echo_client/echo_client";

TEST(Examples, SeedClientAgainstEchoServerOverTcp) {
  Child server({kServer, "--address", "localhost:0", "--authkey", "secret password"});
  const std::string line = server.ReadLine(20s);
  ASSERT_EQ(line.rfind("listening on localhost:", 0), 0u) << line;
  const std::string address = "localhost:" + line.substr(line.rfind(':') + 1);
  Child seed({"/usr/bin/python3", "examples/python/seed_client.py", address, "--list"});
  EXPECT_EQ(seed.ReadLine(20s), "echoed ['a', 2.5, None]");
  EXPECT_EQ(seed.Wait(), 0);
  EXPECT_NE(server.ReadLine(20s).find("(socket)"), std::string::npos);
  EXPECT_EQ(server.ReadLine(20s), "closed");  // the pickled 'close' ended the server
  EXPECT_EQ(server.Wait(), 0);
}

TEST(Examples, EchoClientAgainstEchoServerUsesSharedMemory) {
  const std::string path = testing::UniqueSocketPath();
  Child server({kServer, "--socket", path});
  ASSERT_EQ(server.ReadLine(20s), "listening on " + path);
  Child client({kClient, "--socket", path, "hello", "world"});
  EXPECT_EQ(client.ReadLine(20s), "transport: shared memory");
  EXPECT_EQ(client.ReadLine(20s), "hello");
  EXPECT_EQ(client.ReadLine(20s), "world");
  EXPECT_EQ(client.Wait(), 0);
  EXPECT_EQ(server.Wait(), 0);                 // b"close" ended the server
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // socket file removed
}

}  // namespace
}  // namespace shmlink::transport
