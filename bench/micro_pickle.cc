// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Micro benchmarks of the pickle codec on the seed's message: decode of CPython's own
// protocol-4 pickle of ['a', 2.5, None, True, 10**30, -5, b'x', bytearray(b'y'), (1,2),
// {'k': [1]}, {1,2}] (multiprocessing's default protocol), and encode of the same Value.
// Registrations only: //bench:micro links benchmark_main.
#include <benchmark/benchmark.h>

#include <string>
#include <string_view>
#include <vector>

#include <shmlink/pickle.h>

namespace {

using shmlink::pickle::Value;

// pickle.dumps(['a', 2.5, None, True, 10**30, -5, b'x', bytearray(b'y'), (1,2),
//               {'k': [1]}, {1,2}], 4) from Debian's Python 3.11.
constexpr std::string_view kSeedPickle4(
    "\x80\x04\x95g\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x01"
    "a\x94G@\x04\x00\x00\x00\x00\x00"
    "\x00N\x88\x8a\r\x00\x00\x00@\xea\xedtF\xd0\x9c,\x9f\x0cJ\xfb\xff\xff\xff"
    "C\x01x\x94\x8c"
    "\x08"
    "builtins\x94\x8c\tbytearray\x94\x93\x94"
    "C\x01y\x94\x85\x94R\x94K\x01K\x02\x86\x94}"
    "\x94\x8c\x01k\x94]\x94K\x01"
    "as\x8f\x94(K\x01K\x02\x90"
    "e.",
    114);

Value SeedList() {
  return Value::List({Value::Str("a"), Value::Float(2.5), Value::None(), Value::Bool(true),
                      Value::IntFromDecimal("1000000000000000000000000000000").value(),
                      Value::Int(-5), Value::Bytes("x"), Value::ByteArray("y"),
                      Value::Tuple({Value::Int(1), Value::Int(2)}),
                      Value::Dict({{Value::Str("k"), Value::List({Value::Int(1)})}}),
                      Value::Set({Value::Int(1), Value::Int(2)})});
}

void BM_PickleDecodeSeedList(benchmark::State& state) {
  const auto data = shmlink::pickle::AsBytes(kSeedPickle4);
  if (!(shmlink::pickle::Decode(data).value() == SeedList())) {
    state.SkipWithError("seed pickle does not decode to the seed list");
    return;
  }
  for (auto _ : state) {
    auto v = shmlink::pickle::Decode(data);
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kSeedPickle4.size()));
}
BENCHMARK(BM_PickleDecodeSeedList);

void BM_PickleEncodeSeedList(benchmark::State& state) {
  const Value v = SeedList();
  const int protocol = static_cast<int>(state.range(0));
  std::vector<std::byte> out;
  for (auto _ : state) {
    out.clear();
    auto r = shmlink::pickle::EncodeAppend(v, &out, protocol);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_PickleEncodeSeedList)->Arg(2)->Arg(4)->Arg(5);

// A large bytes payload (protocol 4): the cost is the one copy into the Value.
void BM_PickleDecodeBytes(benchmark::State& state) {
  const auto enc = shmlink::pickle::Encode(
                       Value::Bytes(std::string(static_cast<std::size_t>(state.range(0)), 'x')))
                       .value();
  for (auto _ : state) {
    auto v = shmlink::pickle::Decode(enc);
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * enc.size()));
}
BENCHMARK(BM_PickleDecodeBytes)->Arg(4096)->Arg(1 << 20);

}  // namespace
