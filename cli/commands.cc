// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "cli/commands.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/report_format.h"
#include "cli/segment_report.h"

#include <shmlink/log.h>
#include <shmlink/segment.h>

namespace shmlink::cli {
namespace {

// An open shm directory.
struct Dir {
  int fd = -1;
  explicit Dir(const std::string& path)
      : fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~Dir() {
    if (fd >= 0) ::close(fd);
  }
};

// "/feed" or "feed" -> "feed"; nullopt for names that cannot be shm names.
std::optional<std::string> FileOf(const std::string& name) {
  std::string f = !name.empty() && name[0] == '/' ? name.substr(1) : name;
  if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos || f.size() > 254) {
    return std::nullopt;
  }
  return f;
}

std::vector<std::string> FilesIn(int dir_fd) {
  std::vector<std::string> files;
  const int fd = ::dup(dir_fd);
  if (fd < 0) return files;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return files;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (e->d_type == DT_DIR) continue;
    files.push_back(n);
  }
  ::closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool OpenDir(const std::string& path, const Dir& dir, std::ostream& err) {
  if (dir.fd >= 0) return true;
  err << "shmlink: cannot open directory " << path << ": " << std::strerror(errno) << "\n";
  return false;
}

}  // namespace

int RunList(const std::string& dir_path, bool json, bool all, std::ostream& out,
            std::ostream& err) {
  Dir dir(dir_path);
  if (!OpenDir(dir_path, dir, err)) return 1;
  const ProcessTable procs = ProcessTable::Scan();
  std::vector<SegmentReport> reports;
  for (const std::string& file : FilesIn(dir.fd)) {
    SegmentFile f = SegmentFile::Open(dir.fd, file, SegmentFile::Mode::kReadOnly);
    SegmentReport r = ReadReport(f, procs);
    if (!all && r.cls == FileClass::kForeign) continue;
    reports.push_back(std::move(r));
  }
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const SegmentReport& r : reports) arr.push_back(ReportJson(r, false));
    out << arr.dump(2) << "\n";
  } else {
    out << FormatList(reports);
  }
  return 0;
}

int RunInspect(const std::string& dir_path, const std::string& name, bool json, std::ostream& out,
               std::ostream& err) {
  auto file = FileOf(name);
  if (!file) {
    err << "shmlink: invalid segment name '" << name << "'\n";
    return 2;
  }
  Dir dir(dir_path);
  if (!OpenDir(dir_path, dir, err)) return 1;
  SegmentFile f = SegmentFile::Open(dir.fd, *file, SegmentFile::Mode::kReadOnly);
  if (f.fd() < 0 && f.error() == ENOENT) {
    err << "shmlink: no segment /" << *file << " in " << dir_path << "\n";
    return 1;
  }
  const SegmentReport r = ReadReport(f, ProcessTable::Scan());
  if (json) {
    out << ReportJson(r, true).dump(2) << "\n";
  } else {
    out << FormatInspect(r);
  }
  return r.cls == FileClass::kUnreadable ? 1 : 0;
}

int RunWatch(const std::string& dir_path, const std::string& name, const WatchOptions& opts,
             std::ostream& out, std::ostream& err) {
  auto file = FileOf(name);
  if (!file) {
    err << "shmlink: invalid segment name '" << name << "'\n";
    return 2;
  }
  if (!(opts.interval_s > 0)) {
    err << "shmlink: --interval must be positive\n";
    return 2;
  }
  Dir dir(dir_path);
  if (!OpenDir(dir_path, dir, err)) return 1;
  // One open file for the whole watch: a segment re-created under the name is not mixed in.
  SegmentFile f = SegmentFile::Open(dir.fd, *file, SegmentFile::Mode::kReadOnly);
  if (f.fd() < 0) {
    err << "shmlink: cannot open /" << *file << ": " << std::strerror(f.error()) << "\n";
    return 1;
  }
  const ProcessTable no_scan;  // holder states only; watch does not scan /proc each time
  SegmentReport before = ReadReport(f, no_scan);
  if (before.cls != FileClass::kSegment) {
    err << "shmlink: /" << *file << " is not a readable segment: " << before.problem << "\n";
    return 1;
  }
  const bool tty = !opts.json && ::isatty(STDOUT_FILENO) && &out == &std::cout;
  auto t0 = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(opts.interval_s);
  if (!opts.json && !tty) out << FormatWatchHeader() << std::flush;
  auto last = t0;
  for (int printed = 0; opts.count <= 0 || printed < opts.count; ++printed) {
    std::this_thread::sleep_until(
        t0 + std::chrono::duration_cast<std::chrono::nanoseconds>(interval * (printed + 1)));
    const auto t1 = std::chrono::steady_clock::now();
    SegmentReport after = ReadReport(f, no_scan);
    if (after.cls != FileClass::kSegment) {
      err << "shmlink: /" << *file << " became unreadable: " << after.problem << "\n";
      return 1;
    }
    const double dt = std::chrono::duration<double>(t1 - last).count();
    last = t1;
    const WatchSample s = MakeWatchSample(before, after, dt, NowUnix());
    if (opts.json) {
      out << WatchJson(before.name, s).dump() << "\n" << std::flush;
    } else if (tty) {
      out << "\033[H\033[2J"
          << "shmlink watch " << before.name << " (every " << opts.interval_s
          << " s; Ctrl-C to stop)\n\n"
          << FormatWatchHeader() << FormatWatchLine(s) << "\n"
          << FormatInspect(after) << std::flush;
    } else {
      out << FormatWatchLine(s) << std::flush;
    }
    before = std::move(after);
  }
  return 0;
}

int RunClean(const std::string& dir_path, bool dry_run, const std::vector<std::string>& names,
             std::ostream& out, std::ostream& err) {
  Dir dir(dir_path);
  if (!OpenDir(dir_path, dir, err)) return 1;
  std::vector<std::string> files;
  int status = 0;
  if (names.empty()) {
    files = FilesIn(dir.fd);
  } else {
    for (const std::string& n : names) {
      auto f = FileOf(n);
      if (!f) {
        err << "shmlink: invalid segment name '" << n << "'\n";
        return 2;
      }
      files.push_back(*f);
    }
  }
  const ProcessTable procs = ProcessTable::Scan();
  for (const std::string& file : files) {
    // Read-write: the unlink lock (UnlinkIfSameFile) is a write lock. Deciding and unlinking
    // use this one open file, so a segment re-created under the name is never judged by
    // the old one's holders.
    SegmentFile f = SegmentFile::Open(dir.fd, file, SegmentFile::Mode::kReadWrite);
    if (f.fd() < 0) {
      if (f.error() == ENOENT) {
        if (!names.empty()) {
          err << "shmlink: no segment /" << file << "\n";
          status = 1;
        }
        continue;
      }
      if (!names.empty() || f.error() != EACCES) {
        out << "kept /" << file << ": cannot open: " << std::strerror(f.error()) << "\n";
      }
      continue;
    }
    const SegmentReport r = ReadReport(f, procs);
    if (!r.stale) {
      // Foreign files are not ours: mention them only when asked about by name.
      if (r.cls != FileClass::kForeign || !names.empty()) {
        out << "kept " << r.name << ": " << r.verdict << "\n";
      }
      continue;
    }
    if (dry_run) {
      out << "would remove " << r.name << ": " << r.verdict << "\n";
      continue;
    }
    // Under the unlink lock, with the name checked to still be this file: judge once more
    // (a process may have attached or taken a role since the first look).
    std::string second_verdict;
    auto removed = UnlinkIfSameFile(dir.fd, file, f.fd(), [&] {
      const SegmentReport again = ReadReport(f, ProcessTable::Scan());
      second_verdict = again.verdict;
      return again.stale;
    });
    if (!removed) {
      err << "shmlink: cannot remove " << r.name << ": " << removed.error().message() << "\n";
      status = 1;
    } else if (*removed) {
      out << "removed " << r.name << ": " << r.verdict << "\n";
      LogEvent(LogLevel::kInfo, "stale-removed", r.name, "by shmlink clean: %s", r.verdict.c_str());
    } else if (!second_verdict.empty()) {
      out << "kept " << r.name << ": changed while cleaning: " << second_verdict << "\n";
    } else {
      out << "kept " << r.name << ": the name now refers to another (re-created) segment\n";
    }
  }
  return status;
}

}  // namespace shmlink::cli
