// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Tests of the pickle codec against the real thing: golden pickles are produced at test
// time by Debian's /usr/bin/python3 (protocols 0..5), and everything we encode is loaded
// back by it and compared strictly (types included). Hostile inputs: globals/reduce
// payloads, every truncation and many corruptions of every golden pickle, deep nesting,
// huge declared lengths, shared-reference blow-up, cycles.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <shmlink/pickle.h>

namespace shmlink::pickle {
namespace {

using namespace std::string_literals;
using Bytes = std::vector<std::byte>;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kEdge = 64;         // prefixes: every offset this close to an end
constexpr std::size_t kStride = 211;      // and a stride in between
constexpr std::size_t kCorruptMax = 600;  // corrupt only pickles up to this size
#else
constexpr std::size_t kEdge = 300;
constexpr std::size_t kStride = 37;
constexpr std::size_t kCorruptMax = 2000;
#endif

constexpr const char* kPython = "/usr/bin/python3";

Bytes ToBytes(std::string_view s) {
  auto sp = AsBytes(s);
  return Bytes(sp.begin(), sp.end());
}

std::string Hex(const Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (auto x : b) {
    s.push_back(d[static_cast<unsigned>(x) >> 4]);
    s.push_back(d[static_cast<unsigned>(x) & 15]);
  }
  return s;
}

Bytes Unhex(std::string_view h) {
  Bytes b;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    b.push_back(static_cast<std::byte>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return b;
}

// Runs /usr/bin/python3 -c script args... and returns its stdout; fails the test on a
// non-zero exit. stdin is /dev/null; stderr is inherited (shows tracebacks in the log).
std::string RunPython(const std::string& script, const std::vector<std::string>& args) {
  int out[2];
  EXPECT_EQ(::pipe(out), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(kPython));
    argv.push_back(const_cast<char*>("-c"));
    argv.push_back(const_cast<char*>(script.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(kPython, argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string result;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) result.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "python failed: " << status;
  return result;
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

// Pickles each expression at each protocol with CPython; returns [expr][protocol] -> bytes.
std::vector<std::map<int, Bytes>> PythonPickles(const std::vector<std::string>& exprs, int lo = 0,
                                                int hi = 5) {
  const std::string script = R"(
import pickle, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
for i, e in enumerate(sys.argv[3:]):
    o = eval(e)
    for p in range(lo, hi + 1):
        print(i, p, pickle.dumps(o, protocol=p).hex())
)";
  std::vector<std::string> args{std::to_string(lo), std::to_string(hi)};
  args.insert(args.end(), exprs.begin(), exprs.end());
  std::vector<std::map<int, Bytes>> out(exprs.size());
  for (const auto& line : Lines(RunPython(script, args))) {
    std::istringstream in(line);
    std::size_t i;
    int p;
    std::string hex;
    in >> i >> p >> hex;
    out.at(i)[p] = Unhex(hex);
  }
  return out;
}

// Python-side strict equality (types included; sets/dicts by content; floats by repr).
constexpr const char* kStrictEq = R"(
import sys
sys.setrecursionlimit(20000)
def S(a, b):
    if type(a) is not type(b): return False
    if isinstance(a, float): return repr(a) == repr(b)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(S(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b): return False
        return all(S(ka, kb) and S(va, vb) for (ka, va), (kb, vb) in zip(sorted(a.items(), key=repr), sorted(b.items(), key=repr)))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(S(x, y) for x, y in zip(sorted(a, key=repr), sorted(b, key=repr)))
    return a == b
)";

// Loads each (expr index, protocol, hex pickle) with CPython, strictly compares with
// eval(expr); returns the lines python printed ("i p OK" or "i p FAIL ...").
std::vector<std::string> PythonCheckLoads(const std::vector<std::string>& exprs,
                                          const std::vector<std::string>& triples) {
  char path[] = "/tmp/shmlink-pickle-test-XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  std::string body;
  for (const auto& t : triples) body += t + "\n";
  EXPECT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  ::close(fd);
  const std::string script = std::string(kStrictEq) + R"(
import pickle, sys
exprs = sys.argv[2:]
for line in open(sys.argv[1]):
    i, p, h = line.split()
    want = eval(exprs[int(i)])
    try:
        got = pickle.loads(bytes.fromhex(h))
        print(i, p, 'OK' if S(got, want) else 'FAIL got=%r' % (got,))
    except Exception as ex:
        print(i, p, 'FAIL exception %r' % (ex,))
)";
  std::vector<std::string> args{path};
  args.insert(args.end(), exprs.begin(), exprs.end());
  auto out = Lines(RunPython(script, args));
  ::unlink(path);
  return out;
}

Value I(std::int64_t i) { return Value::Int(i); }
Value S(std::string s) { return Value::Str(std::move(s)); }
Value Big(std::string_view dec) { return Value::IntFromDecimal(dec).value(); }

Value SeedList() {
  return Value::List({S("a"), Value::Float(2.5), Value::None(), Value::Bool(true),
                      Big("1000000000000000000000000000000"), I(-5), Value::Bytes("x"),
                      Value::ByteArray("y"), Value::Tuple({I(1), I(2)}),
                      Value::Dict({{S("k"), Value::List({I(1)})}}), Value::Set({I(1), I(2)})});
}

struct Case {
  std::string expr;  // Python expression
  Value want;        // the same object as a Value
};

std::vector<Case> GoldenCases() {
  std::vector<Case> c;
  c.push_back({"'close'", S("close")});
  c.push_back(
      {"['a', 2.5, None, True, 10**30, -5, b'x', bytearray(b'y'), (1,2), {'k': [1]}, {1,2}]",
       SeedList()});
  c.push_back(
      {"{'a': [1, (2, [3, {'b': None}])], 'c': {'d': {'e': ()}}}",
       Value::Dict(
           {{S("a"),
             Value::List(
                 {I(1), Value::Tuple(
                            {I(2), Value::List({I(3), Value::Dict({{S("b"), Value::None()}})})})})},
            {S("c"), Value::Dict({{S("d"), Value::Dict({{S("e"), Value::Tuple({})}})}})}})});
  c.push_back(
      {"[2**63, -2**63, 2**64-1, -2**64, 2**1000, -(2**1000)+7, 255, 256, 65535, 65536, "
       "-1, 2**31-1, -2**31, 2**31, 0, -2**31-1, 2**62, 128, -128, -129]",
       Value::List({Big("9223372036854775808"),
                    I(std::numeric_limits<std::int64_t>::min()),
                    Big("18446744073709551615"),
                    Big("-18446744073709551616"),
                    Value::IntFromDecimal(
                        Value::IntFromBytes(std::string(125, '\0') + "\x01").int_decimal())
                        .value(),
                    Big("-107150860718626732094842504906000181056140481170553360744375038837"
                        "035105112493612249319837881569585812759467291755314682518714528569"
                        "231404359845775746985748039345677748242309854210746050623711418779"
                        "541821530464749835819412673987675591655439460770629145711964776865"
                        "42167660429831652624386837205668069369"),
                    I(255),
                    I(256),
                    I(65535),
                    I(65536),
                    I(-1),
                    I(2147483647),
                    I(-2147483648LL),
                    I(2147483648LL),
                    I(0),
                    I(-2147483649LL),
                    I(4611686018427387904LL),
                    I(128),
                    I(-128),
                    I(-129)})});
  c.push_back(
      {R"(['h\u00e9llo w\u00f6rld \u65e5\u672c \U0001f600', '\ud800', '', 'a\\b\nc\\u1234\r\x1a\x00'])",
       Value::List({S("h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"),
                    S("\xed\xa0\x80"), S(""), S(std::string("a\\b\nc\\u1234\r\x1a\0", 14))})});
  c.push_back({"[[], (), {}, set(), frozenset(), b'', bytearray(), '']",
               Value::List({Value::List({}), Value::Tuple({}), Value::Dict({}), Value::Set({}),
                            Value::FrozenSet({}), Value::Bytes(""), Value::ByteArray(""), S("")})});
  c.push_back({"[0.0, -0.0, 1e308, float('inf'), float('-inf'), 1e-300, 3.141592653589793, 5e-324]",
               Value::List({Value::Float(0.0), Value::Float(-0.0), Value::Float(1e308),
                            Value::Float(INFINITY), Value::Float(-INFINITY), Value::Float(1e-300),
                            Value::Float(3.141592653589793), Value::Float(5e-324)})});
  c.push_back({"frozenset({1, 'a', (2, 3)})",
               Value::FrozenSet({I(1), S("a"), Value::Tuple({I(2), I(3)})})});
  c.push_back({"(lambda x: [x, x, {'k': x}, (x,)])([1, 2])", [] {
                 Value x = Value::List({I(1), I(2)});
                 return Value::List({x, x, Value::Dict({{S("k"), x}}), Value::Tuple({x})});
               }()});
  c.push_back(
      {"((1,), (1,2), (1,2,3), (1,2,3,4), (1,2,3,4,5))",
       Value::Tuple({Value::Tuple({I(1)}), Value::Tuple({I(1), I(2)}),
                     Value::Tuple({I(1), I(2), I(3)}), Value::Tuple({I(1), I(2), I(3), I(4)}),
                     Value::Tuple({I(1), I(2), I(3), I(4), I(5)})})});
  {
    std::vector<Value> xs;
    for (int i = 0; i < 2500; ++i) xs.push_back(I(i * 7919 - 5000000));
    c.push_back({"[i * 7919 - 5000000 for i in range(2500)]", Value::List(xs)});
    std::vector<Value::Entry> es;
    for (int i = 0; i < 1500; ++i) es.emplace_back(I(i), S(std::to_string(i)));
    c.push_back({"{i: str(i) for i in range(1500)}", Value::Dict(es)});
    std::vector<Value> set;
    for (int i = 0; i < 1500; ++i) set.push_back(I(i));
    c.push_back({"set(range(1500))", Value::Set(set)});
  }
  {
    std::string b;
    for (int i = 0; i < 200; ++i) b += std::string("\x00\xff", 2);
    c.push_back(
        {"[b'\\x00\\xff' * 200, bytearray(b'\\x00\\xff' * 200), 'x' * 300, b'\\x80\\n\\\\']"s,
         Value::List({Value::Bytes(b), Value::ByteArray(b), S(std::string(300, 'x')),
                      Value::Bytes("\x80\n\\")})});
  }
  c.push_back({"{(1, 'a'): True, None: False, 2.5: b'z', frozenset({1}): 0, -3: (), b'k': 'v'}",
               Value::Dict({{Value::Tuple({I(1), S("a")}), Value::Bool(true)},
                            {Value::None(), Value::Bool(false)},
                            {Value::Float(2.5), Value::Bytes("z")},
                            {Value::FrozenSet({I(1)}), I(0)},
                            {I(-3), Value::Tuple({})},
                            {Value::Bytes("k"), S("v")}})});
  {
    Value deep = Value::List({});
    for (int i = 0; i < 400; ++i) deep = Value::List({deep});
    c.push_back({"(lambda f: f(f, 400))(lambda f, n: [] if n == 0 else [f(f, n - 1)])", deep});
  }
  return c;
}

// ---------------------------------------------------------------------------------------

TEST(PickleErrc, CategoryAndMessages) {
  std::error_code ec = PickleErrc::kUnsupported;
  EXPECT_STREQ(ec.category().name(), "shmlink.pickle");
  EXPECT_EQ(ec, PickleErrc::kUnsupported);
  EXPECT_NE(ec, PickleErrc::kMalformed);
  for (int e = 1; e <= static_cast<int>(PickleErrc::kInvalidUtf8); ++e) {
    std::string m = std::error_code(e, PickleCategory()).message();
    EXPECT_FALSE(m.empty());
    EXPECT_EQ(m.find("unknown"), std::string::npos) << e;
  }
}

TEST(PickleValue, IntRepresentationIsCanonical) {
  EXPECT_EQ(Value::IntFromBytes(std::string("\x05\x00\x00", 3)), I(5));
  EXPECT_EQ(Value::IntFromBytes("\xff"), I(-1));
  EXPECT_EQ(Value::IntFromBytes(""), I(0));
  EXPECT_TRUE(Value::IntFromBytes(std::string("\0\0\0\0\0\0\0\x80\0", 9)).is_int());
  EXPECT_FALSE(Value::IntFromBytes(std::string("\0\0\0\0\0\0\0\x80\0", 9)).fits_int64());
  EXPECT_EQ(Value::IntFromBytes(std::string("\0\0\0\0\0\0\0\x80", 8)).as_int(),
            std::numeric_limits<std::int64_t>::min());
  for (const char* d :
       {"0", "-1", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809", "1000000000000000000000000000000",
        "-340282366920938463463374607431768211456"}) {
    auto v = Value::IntFromDecimal(d);
    ASSERT_TRUE(v.has_value()) << d;
    EXPECT_EQ(v->int_decimal(), d);
    EXPECT_EQ(Value::IntFromBytes(v->int_bytes()), *v) << d;
  }
  EXPECT_EQ(Value::IntFromDecimal("+12")->as_int(), 12);
  EXPECT_EQ(Value::IntFromDecimal("").error(), PickleErrc::kMalformed);
  EXPECT_EQ(Value::IntFromDecimal("12a").error(), PickleErrc::kMalformed);
  EXPECT_EQ(Value::IntFromDecimal(std::string(4301, '9')).error(), PickleErrc::kTooLarge);
  EXPECT_TRUE(Value::IntFromDecimal(std::string(4300, '9')).has_value());
}

TEST(PickleValue, EqualityAndAccessors) {
  EXPECT_NE(I(1), Value::Bool(true));
  EXPECT_NE(I(1), Value::Float(1.0));
  EXPECT_NE(Value::Bytes("a"), Value::ByteArray("a"));
  EXPECT_NE(Value::Set({I(1)}), Value::FrozenSet({I(1)}));
  EXPECT_EQ(Value::Set({I(1), I(2)}), Value::Set({I(2), I(1)}));
  EXPECT_NE(Value::Set({I(1), I(1)}), Value::Set({I(1), I(2)}));
  EXPECT_EQ(Value::Dict({{I(1), S("a")}, {I(2), S("b")}}),
            Value::Dict({{I(2), S("b")}, {I(1), S("a")}}));
  EXPECT_NE(Value::Dict({{I(1), S("a")}}), Value::Dict({{I(1), S("b")}}));
  EXPECT_NE(Value::List({I(1), I(2)}), Value::List({I(2), I(1)}));
  EXPECT_EQ(Value::Float(NAN), Value::Float(NAN));
  Value d = Value::Dict({{S("k"), I(3)}});
  ASSERT_NE(d.Find(S("k")), nullptr);
  EXPECT_EQ(d.Find(S("k"))->as_int(), 3);
  EXPECT_EQ(d.Find(S("x")), nullptr);
  EXPECT_EQ(Value::Bytes("ab").byte_span().size(), 2u);
  EXPECT_EQ(SeedList().ToString(),
            "['a', 2.5, None, True, 1000000000000000000000000000000, -5, b'x', "
            "bytearray(b'y'), (1, 2), {'k': [1]}, {1, 2}]");
  EXPECT_EQ(Value::Tuple({I(1)}).ToString(), "(1,)");
  EXPECT_EQ(Value::Set({}).ToString(), "set()");
  EXPECT_EQ(S("it's").ToString(), "\"it's\"");
  EXPECT_EQ(Value::Bytes("\x00\n"s).ToString(), std::string("b'\\x00\\n'"));
}

TEST(PickleValueDeath, WrongAccessorAborts) {
  EXPECT_DEATH((void)S("x").as_int(), "as_int");
  EXPECT_DEATH((void)I(1).str(), "str");
}

// CPython's pickles (protocols 0..5) of the golden objects decode to the expected Values,
// and their repr matches Python's for the seed's list.
TEST(PickleGolden, DecodesWhatCPythonWrites) {
  auto cases = GoldenCases();
  std::vector<std::string> exprs;
  for (const auto& c : cases) exprs.push_back(c.expr);
  auto pickles = PythonPickles(exprs);
  int checked = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    ASSERT_EQ(pickles[i].size(), 6u) << cases[i].expr;
    for (const auto& [proto, data] : pickles[i]) {
      auto v = Decode(data);
      ASSERT_TRUE(v.has_value()) << cases[i].expr << " protocol " << proto << ": "
                                 << v.error().message() << " " << Hex(data);
      EXPECT_EQ(*v, cases[i].want) << cases[i].expr << " protocol " << proto << "\n got "
                                   << v->ToString() << "\nwant " << cases[i].want.ToString();
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(cases.size()) * 6);
  // The seed's own message at multiprocessing's default protocol, and its repr.
  auto seed = PythonPickles({"'close'"}, 4, 4);
  EXPECT_EQ(Decode(seed[0][4]).value(), S("close"));
  auto repr = RunPython(
      "print(repr(['a', 2.5, None, True, 10**30, -5, b'x', bytearray(b'y'), (1,2), "
      "{'k': [1]}, {1,2}]))",
      {});
  EXPECT_EQ(SeedList().ToString() + "\n", repr);
  // Exactly what the seed's conn.send() puts on the wire: ForkingPickler.dumps (protocol 4).
  auto wire = RunPython(
      "from multiprocessing.reduction import ForkingPickler\n"
      "for o in ('close', ['a', 2.5, None, True, 10**30, -5, b'x', bytearray(b'y'), (1,2), "
      "{'k': [1]}, {1,2}]): print(bytes(ForkingPickler.dumps(o)).hex())",
      {});
  auto lines = Lines(wire);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Decode(Unhex(lines[0])).value(), S("close"));
  EXPECT_EQ(Decode(Unhex(lines[1])).value(), SeedList());
}

// Everything we encode (protocols 2..5) is read back by CPython as an equal object, and
// decodes back to the same Value here.
TEST(PickleGolden, CPythonLoadsWhatWeEncode) {
  auto cases = GoldenCases();
  std::vector<std::string> exprs, triples;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    exprs.push_back(cases[i].expr);
    for (int p = 2; p <= 5; ++p) {
      auto enc = Encode(cases[i].want, p);
      ASSERT_TRUE(enc.has_value()) << cases[i].expr << " " << enc.error().message();
      auto back = Decode(*enc);
      ASSERT_TRUE(back.has_value()) << cases[i].expr << " p" << p << " " << back.error().message();
      EXPECT_EQ(*back, cases[i].want) << cases[i].expr << " p" << p;
      triples.push_back(std::to_string(i) + " " + std::to_string(p) + " " + Hex(*enc));
    }
  }
  auto results = PythonCheckLoads(exprs, triples);
  ASSERT_EQ(results.size(), triples.size());
  for (const auto& r : results) EXPECT_NE(r.find(" OK"), std::string::npos) << r;
}

TEST(PickleEncode, MatchesCPythonBytesForSimpleValues) {
  // Where our opcode choice equals CPython's (no memo ops needed: scalars), the bytes match.
  auto py = PythonPickles({"'close'", "-5", "10**30", "2.5", "None", "b'x'"}, 2, 3);
  std::vector<Value> vs{S("close"),        I(-5),         Big("1000000000000000000000000000000"),
                        Value::Float(2.5), Value::None(), Value::Bytes("x")};
  for (std::size_t i = 0; i < vs.size(); ++i) {
    for (int p = 2; p <= 3; ++p) {
      Bytes want = py[i][p];
      // CPython memoizes str/bytes (BINPUT 0 before STOP): drop it for comparison.
      if (want.size() >= 3 && want[want.size() - 3] == std::byte{'q'})
        want.erase(want.end() - 3, want.end() - 1);
      if (vs[i].is_bytes() && p == 2) continue;  // memo inside the REDUCE form
      EXPECT_EQ(Hex(Encode(vs[i], p).value()), Hex(want)) << vs[i].ToString() << " p" << p;
    }
  }
}

TEST(PickleEncode, Errors) {
  EXPECT_EQ(Encode(I(1), 1).error(), PickleErrc::kBadProtocol);
  EXPECT_EQ(Encode(I(1), 6).error(), PickleErrc::kBadProtocol);
  EXPECT_EQ(Encode(S("\xff"), 4).error(), PickleErrc::kInvalidUtf8);
  EXPECT_EQ(Encode(S("\xc0\x80"), 4).error(), PickleErrc::kInvalidUtf8);  // overlong
  EXPECT_EQ(Encode(Value::Dict({{Value::List({}), I(1)}}), 4).error(), PickleErrc::kUnhashable);
  EXPECT_EQ(Encode(Value::Dict({{Value::Tuple({Value::Set({})}), I(1)}}), 2).error(),
            PickleErrc::kUnhashable);
  EXPECT_EQ(Encode(Value::Set({Value::ByteArray("")}), 4).error(), PickleErrc::kUnhashable);
  EXPECT_EQ(Encode(Value::FrozenSet({Value::Dict({})}), 3).error(), PickleErrc::kUnhashable);
  Value deep = I(0);
  for (int i = 0; i < 1000; ++i) deep = Value::List({deep});  // depth 1001
  EXPECT_EQ(Encode(deep, 4).error(), PickleErrc::kTooDeep);
  EXPECT_TRUE(Encode(deep.items()[0], 4).has_value());  // depth 1000 is fine
  // EncodeAppend appends after existing bytes and restores them on error.
  std::vector<std::byte> buf(4, std::byte{7});
  ASSERT_TRUE(EncodeAppend(S("x"), &buf, 2).has_value());
  EXPECT_EQ(Decode(std::span(buf).subspan(4)).value(), S("x"));
  const auto size = buf.size();
  EXPECT_FALSE(EncodeAppend(Value::List({I(1), S("\xff")}), &buf, 4).has_value());
  EXPECT_EQ(buf.size(), size);
}

// ---- hostile input -----------------------------------------------------------------------

TEST(PickleHostile, GlobalsAndReduceAreUnsupportedAndNeverRun) {
  char marker[] = "/tmp/shmlink-pickle-pwned-XXXXXX";
  int fd = ::mkstemp(marker);
  ASSERT_GE(fd, 0);
  ::close(fd);
  ::unlink(marker);  // the payloads below would create it if anything were executed
  const std::string m(marker);
  std::vector<std::string> exprs = {
      "int",
      "sum",
      "['a', 2.5, None, int, sum]",
      "(lambda os: type('P', (), {'__reduce__': lambda s: (os.system, ('touch " + m +
          "',))})())(__import__('os'))",
      "(lambda os: type('P', (), {'__reduce__': lambda s: (os.system, ('touch " + m +
          "',))})())(__import__('os')) and None or [1, (lambda os: type('P', (), {'__reduce__': "
          "lambda s: (os.system, ('touch " +
          m + "',))})())(__import__('os'))]",
      "__import__('collections').OrderedDict(a=1)",
      "__import__('datetime').date(2020, 1, 2)",
      "complex(1, 2)",
      "range(3)",
  };
  auto pickles = PythonPickles(exprs, 0, 5);
  int checked = 0;
  for (std::size_t i = 0; i < exprs.size(); ++i) {
    for (const auto& [proto, data] : pickles[i]) {
      auto v = Decode(data);
      ASSERT_FALSE(v.has_value()) << exprs[i] << " p" << proto << " -> " << v->ToString();
      EXPECT_EQ(v.error(), PickleErrc::kUnsupported) << exprs[i] << " p" << proto;
      ++checked;
    }
  }
  EXPECT_GE(checked, 50);
  // The classic protocol-0 payload.
  EXPECT_EQ(Decode(ToBytes("cos\nsystem\n(S'touch " + m + "'\ntR.")).error(),
            PickleErrc::kUnsupported);
  EXPECT_EQ(Decode(ToBytes("cposix\nsystem\n(Vtouch " + m + "\ntR.")).error(),
            PickleErrc::kUnsupported);
  // Recognised callables with any other argument shape are not called either.
  EXPECT_EQ(Decode(ToBytes("\x80\x02"
                           "c__builtin__\nset\nK\x01\x85R."))
                .error(),
            PickleErrc::kUnsupported);
  EXPECT_EQ(Decode(ToBytes("\x80\x02"
                           "c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00utf8"
                           "\x86R."s))
                .error(),
            PickleErrc::kUnsupported);
  EXPECT_EQ(Decode(ToBytes("\x80\x02"
                           "c__builtin__\nset\n."))
                .error(),
            PickleErrc::kUnsupported);
  EXPECT_EQ(Decode(ToBytes("\x80\x02]c__builtin__\nset\na.")).error(), PickleErrc::kUnsupported);
  // Out-of-band buffers (protocol 5).
  EXPECT_EQ(Decode(ToBytes("\x80\x05\x97.")).error(), PickleErrc::kUnsupported);
  struct stat st;
  EXPECT_NE(::stat(marker, &st), 0) << "payload was executed";
  // The codec is stateless: a good pickle decodes right after the bad ones.
  EXPECT_EQ(Decode(Encode(SeedList()).value()).value(), SeedList());
}

TEST(PickleHostile, EveryTruncationOfEveryGoldenPickleIsTruncated) {
  auto cases = GoldenCases();
  std::vector<std::string> exprs;
  for (const auto& c : cases) exprs.push_back(c.expr);
  auto pickles = PythonPickles(exprs);
  std::size_t prefixes = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    for (const auto& [proto, data] : pickles[i]) {
      // Big pickles: every offset near either end, a stride in between.
      const std::size_t n = data.size();
      for (std::size_t len = 0; len < n; len += (len < kEdge || len + kEdge > n) ? 1 : kStride) {
        auto v = Decode(std::span(data).first(len));
        ASSERT_FALSE(v.has_value()) << exprs[i] << " p" << proto << " len " << len;
        ASSERT_EQ(v.error(), PickleErrc::kTruncated)
            << exprs[i] << " p" << proto << " len " << len << " " << v.error().message();
        ++prefixes;
      }
    }
  }
  EXPECT_GT(prefixes, 5000u);
}

// Every single-byte corruption (three replacement values per offset) of the small golden
// pickles: never crashes; whatever decodes re-encodes and round-trips.
TEST(PickleHostile, CorruptionsNeverCrash) {
  auto cases = GoldenCases();
  std::vector<std::string> exprs;
  for (const auto& c : cases) exprs.push_back(c.expr);
  auto pickles = PythonPickles(exprs);
  std::size_t decoded = 0, total = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    for (const auto& [proto, orig] : pickles[i]) {
      if (orig.size() > kCorruptMax) continue;
      for (std::size_t off = 0; off < orig.size(); ++off) {
        for (unsigned x : {0x00u, 0xffu, static_cast<unsigned>(orig[off]) ^ 0x01u}) {
          Bytes data = orig;
          data[off] = static_cast<std::byte>(x);
          ++total;
          auto v = Decode(data);
          if (!v) continue;
          ++decoded;
          auto enc = Encode(*v, 2 + static_cast<int>(off % 4));
          ASSERT_TRUE(enc.has_value()) << enc.error().message();
          EXPECT_EQ(Decode(*enc).value(), *v);
        }
      }
    }
  }
  EXPECT_GT(total, 5000u);
  EXPECT_GT(decoded, 0u);
}

Bytes Nest(std::size_t depth) {  // depth nested lists: [[[...[]...]]]
  std::string s = "\x80\x02" + std::string(depth, ']') + std::string(depth - 1, 'a') + ".";
  return ToBytes(s);
}

TEST(PickleHostile, DeepNesting) {
  EXPECT_TRUE(Decode(Nest(1000)).has_value());
  EXPECT_EQ(Decode(Nest(1001)).error(), PickleErrc::kTooDeep);
  EXPECT_EQ(Decode(Nest(1000000)).error(), PickleErrc::kTooDeep);  // no stack overflow
  // Nested tuples via MARK ... TUPLE.
  std::string t = "\x80\x02" + std::string(200000, '(') + std::string(200000, 't') + ".";
  EXPECT_EQ(Decode(ToBytes(t)).error(), PickleErrc::kTooDeep);
  // Dict values nested through SETITEM.
  std::string d = "\x80\x02";
  for (int i = 0; i < 5000; ++i) d += "}K\x01";
  d += "}";
  for (int i = 0; i < 5000; ++i) d += "s";
  d += ".";
  EXPECT_EQ(Decode(ToBytes(d)).error(), PickleErrc::kTooDeep);
  DecodeOptions shallow;
  shallow.max_depth = 3;
  EXPECT_TRUE(Decode(Nest(3), shallow).has_value());
  EXPECT_EQ(Decode(Nest(4), shallow).error(), PickleErrc::kTooDeep);
}

TEST(PickleHostile, HugeDeclaredLengths) {
  const std::string ff8(8, '\xff');
  for (std::string s : {"\x80\x04\x8d" + ff8 + "x.",                // BINUNICODE8
                        "\x80\x04\x8e" + ff8 + "x.",                // BINBYTES8
                        "\x80\x05\x96" + ff8 + "x.",                // BYTEARRAY8
                        "\x80\x04\x95" + ff8 + "N.",                // FRAME
                        std::string("\x80\x03X\xff\xff\xff\xff."),  // BINUNICODE
                        std::string("\x80\x03"
                                    "B\xff\xff\xff\x7f"
                                    "abc."),                                  // BINBYTES
                        std::string("\x80\x02\x8a\xff\x01."),                 // LONG1
                        std::string("\x80\x02\x8b\xff\xff\xff\x7f\x01.")}) {  // LONG4
    EXPECT_EQ(Decode(ToBytes(s)).error(), PickleErrc::kTruncated) << Hex(ToBytes(s));
  }
  EXPECT_EQ(Decode(ToBytes("\x80\x02\x8b\xff\xff\xff\xff\x01.")).error(),
            PickleErrc::kMalformed);  // negative LONG4 length
  EXPECT_EQ(Decode(ToBytes("\x80\x02T\x00\x00\x00\x80."s)).error(),
            PickleErrc::kMalformed);  // negative BINSTRING length
  // Decimal ints beyond CPython's 4300-digit limit.
  EXPECT_EQ(Decode(ToBytes("L" + std::string(5000, '7') + "L\n.")).error(), PickleErrc::kTooLarge);
  // Byte budget.
  DecodeOptions small;
  small.max_bytes = 10;
  EXPECT_EQ(Decode(ToBytes("\x80\x03"
                           "C\x0b"
                           "hello world."),
                   small)
                .error(),
            PickleErrc::kTooLarge);
  EXPECT_TRUE(Decode(ToBytes("\x80\x03"
                             "C\x0a"
                             "helloworld."),
                     small)
                  .has_value());
}

TEST(PickleHostile, SharedReferenceBlowUpHitsTheBudget) {
  // (N, N) nested 64 times: 129 bytes describing 2^65 leaves.
  std::string s = "\x80\x02N";
  for (int i = 0; i < 64; ++i) s += "2\x86";
  s += ".";
  DecodeOptions opts;
  opts.max_values = 100000;
  EXPECT_EQ(Decode(ToBytes(s), opts).error(), PickleErrc::kTooLarge);
  // Within budget, the shared references decode as copies.
  std::string small = "\x80\x02N";
  for (int i = 0; i < 4; ++i) small += "2\x86";
  small += ".";
  auto v = Decode(ToBytes(small));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->ToString(),
            "((((None, None), (None, None)), ((None, None), (None, None))), "
            "(((None, None), (None, None)), ((None, None), (None, None))))");
}

// Re-using one memoized object in many REDUCE calls must not cost O(n^2) memory.
TEST(PickleHostile, RepeatedReduceOfAMemoizedObjectHitsTheBudget) {
  auto build = [](int repeats, bool set) {
    std::string s = "\x80\x02"s;
    if (set) {
      s += "]q\x00("s + std::string(1000, 'N') + "e";  // memo 0: a list of 1000 Nones
    } else {
      s += "X\xe8\x03\x00\x00"s + std::string(1000, 'a') + "q\x00"s;  // memo 0: 'a'*1000
    }
    s += "0";
    for (int i = 0; i < repeats; ++i) {
      s += set ? "c__builtin__\nset\nh\x00\x85R0"s
               : "c_codecs\nencode\nh\x00X\x06\x00\x00\x00latin1\x86R0"s;
    }
    return ToBytes(s + "N.");
  };
  for (bool set : {false, true}) {
    EXPECT_TRUE(Decode(build(1, set)).has_value()) << set;
    EXPECT_EQ(Decode(build(100, set)).error(), PickleErrc::kTooLarge) << set;
  }
}

// Found by the fuzzer: the working-node budget must not reject what the value budget
// accepts (bytearray at protocol 2 takes 8 working nodes per value).
TEST(PickleDecode, ValueBudgetAdmitsProtocol2Forms) {
  std::vector<Value> xs(1000, Value::ByteArray("\x85"));
  const Value v = Value::List(xs);
  DecodeOptions opts;
  opts.max_values = 1001;
  for (int p = 2; p <= 5; ++p) EXPECT_EQ(Decode(Encode(v, p).value(), opts).value(), v) << p;
  opts.max_values = 1000;
  EXPECT_EQ(Decode(Encode(v, 4).value(), opts).error(), PickleErrc::kTooLarge);
}

TEST(PickleHostile, MalformedStreams) {
  struct Bad {
    std::string data;
    PickleErrc want;
  };
  const std::vector<Bad> bad = {
      {"", PickleErrc::kTruncated},
      {"\x80\x02", PickleErrc::kTruncated},
      {"\x80\x02N", PickleErrc::kTruncated},  // no STOP
      {"\x80\x06N.", PickleErrc::kBadProtocol},
      {"\x80\x02.", PickleErrc::kMalformed},  // STOP on empty stack
      {"\x80\x02"
       "a.",
       PickleErrc::kMalformed},  // APPEND underflow
      {"\x80\x02Na.", PickleErrc::kMalformed},
      {"\x80\x02NNa.", PickleErrc::kMalformed},        // APPEND to a non-list
      {"\x80\x02\x85.", PickleErrc::kMalformed},       // TUPLE1 underflow
      {"\x80\x02(e.", PickleErrc::kMalformed},         // APPENDS without a list
      {"\x80\x02](N(e.", PickleErrc::kMalformed},      // APPENDS target is None
      {"\x80\x02]((e.", PickleErrc::kMalformed},       // target outside the frame
      {"\x80\x02](N(\x85.", PickleErrc::kMalformed},   // TUPLE1 across a mark
      {"\x80\x02t.", PickleErrc::kMalformed},          // TUPLE without MARK
      {"\x80\x02(Nd.", PickleErrc::kMalformed},        // DICT with odd items
      {"\x80\x02}Ns.", PickleErrc::kMalformed},        // SETITEM underflow
      {"\x80\x02h\x05.", PickleErrc::kMalformed},      // memo miss
      {"\x80\x02q\x00N."s, PickleErrc::kMalformed},    // BINPUT on empty stack
      {"\x80\x02N(q\x00N."s, PickleErrc::kMalformed},  // BINPUT across a MARK
      {"gxyz\n.", PickleErrc::kMalformed},             // bad GET index
      {"I12x\n.", PickleErrc::kMalformed},
      {"Fnotafloat\n.", PickleErrc::kMalformed},
      {"\x80\x02\xff.", PickleErrc::kMalformed},  // unknown opcode
      {"\x80\x02\x01.", PickleErrc::kMalformed},
      {"\x80\x02\x93.", PickleErrc::kMalformed},            // STACK_GLOBAL underflow
      {"\x80\x02KK\x93.", PickleErrc::kMalformed},          // one item only
      {"\x80\x02K\x01K\x02\x93.", PickleErrc::kMalformed},  // STACK_GLOBAL of ints
      {"\x80\x03X\x01\x00\x00\x00\xff."s, PickleErrc::kInvalidUtf8},
      {"\x80\x03X\x02\x00\x00\x00\xc3(."s, PickleErrc::kInvalidUtf8},
      {"V\\u12\n.", PickleErrc::kInvalidUtf8},
      {"V\\U00110000\n.", PickleErrc::kInvalidUtf8},
      {"\x80\x02}]Ns.", PickleErrc::kUnhashable},        // list as dict key
      {"\x80\x04\x8f(]\x90.", PickleErrc::kUnhashable},  // list in a set
      {"\x80\x04(\x8f\x91.", PickleErrc::kUnhashable},   // set in a frozenset
      {"\x80\x02(}Nd.", PickleErrc::kUnhashable},        // dict as DICT key
      {"\x80\x02]q\x00h\x00"
       "a."s,
       PickleErrc::kUnsupported},  // self-containing list
      {"\x80\x02]q\x00h\x00\x85"
       "a."s,
       PickleErrc::kUnsupported},  // cycle through a tuple
  };
  for (const auto& b : bad) {
    auto v = Decode(ToBytes(b.data));
    ASSERT_FALSE(v.has_value()) << Hex(ToBytes(b.data)) << " -> " << v->ToString();
    EXPECT_EQ(v.error(), b.want) << Hex(ToBytes(b.data)) << ": " << v.error().message();
  }
}

TEST(PickleDecode, MemoSharesMutableContainersByReference) {
  // outer = []; x = []; outer.extend([x, x]); x.append(1)  ->  [[1], [1]]: the memo and the
  // outer list refer to x itself (CPython semantics), so the late APPEND is seen by both.
  // PROTO 2, ] BINPUT 1, MARK, ] BINPUT 0, BINGET 0, APPENDS, BINGET 0, K 1, APPEND, POP, STOP
  auto v =
      Decode(ToBytes("\x80\x02]q\x01(]q\x00h\x00"
                     "eh\x00K\x01"
                     "a0."s));
  ASSERT_TRUE(v.has_value()) << v.error().message();
  EXPECT_EQ(*v, Value::List({Value::List({I(1)}), Value::List({I(1)})}));
  // A tuple built from x before x was appended to also sees the append, as in CPython.
  auto w =
      Decode(ToBytes("\x80\x02]q\x00\x85h\x00K\x07"
                     "a0."s));
  ASSERT_TRUE(w.has_value()) << w.error().message();
  EXPECT_EQ(*w, Value::Tuple({Value::List({I(7)})}));
  // CPython agrees on both.
  auto py = RunPython(
      "import pickle\n"
      "print(pickle.loads(bytes.fromhex('80025d7101285d71006800656800' '4b01' '61302e')),"
      "      pickle.loads(bytes.fromhex('80025d7100856800' '4b07' '61302e')))",
      {});
  EXPECT_EQ(py, "[[1], [1]] ([7],)\n");
}

TEST(PickleDecode, ProtocolZeroTextForms) {
  EXPECT_EQ(Decode(ToBytes("I01\n.")).value(), Value::Bool(true));
  EXPECT_EQ(Decode(ToBytes("I00\n.")).value(), Value::Bool(false));
  EXPECT_EQ(Decode(ToBytes("I-42\n.")).value(), I(-42));
  EXPECT_EQ(Decode(ToBytes("L123456789012345678901234567890L\n.")).value(),
            Big("123456789012345678901234567890"));
  EXPECT_EQ(Decode(ToBytes("F-2.5\n.")).value(), Value::Float(-2.5));
  EXPECT_EQ(Decode(ToBytes("V\\\\u0041\\u0042\n.")).value(), S("\\\\u0041B"));
  EXPECT_EQ(Decode(ToBytes("U\x03"
                           "abc."))
                .value(),
            Value::Bytes("abc"));  // py2 str
  // A list that contains itself (CPython: [1, 2, [...]]) is not representable.
  EXPECT_EQ(Decode(ToBytes("(lp0\nI1\naI2\nag0\na.")).error(), PickleErrc::kUnsupported);
}

}  // namespace
}  // namespace shmlink::pickle
