// pages_bench: how PackedGemm's kernel gets its weights, two ways alternating
// call by call in one process, at the seed's shapes (m 100).
//
//   pages_bench --rounds 30                 # 4 KiB pages against huge pages
//   pages_bench --rounds 100 --compare claim
//   pages_bench --rounds 100 --compare prefetch
//   pages_bench --rounds 100 --compare depth
//
// `pages` (the default) runs the kernel over the same packed weights on 4 KiB
// pages and on 2 MiB transparent huge pages, each thread taking a fixed share
// of the panels: what startup.h's heap on huge pages is worth to the
// recurrent products. `claim` runs it on huge pages with the threads claiming
// one panel at a time, as PackedGemm::Run does, either claiming the next
// panel before running the one they hold, so that its last slice prefetches
// the panel the thread runs next (what Run does), or after, prefetching the
// panel that follows in memory (what Run did before), which another thread
// may well take. The other comparisons run it on huge pages, claiming ahead,
// with two schedules (packed_gemm::Schedule), the second always Run's:
// `prefetch`, the first tile of each slice prefetching all of the next slice
// (Prefetch::kFirstTile, close to what Run did before) against every tile
// prefetching its share (kSpread); `depth`, slices 256 deep (Run's before)
// against kDepthBlock.
#include <sys/mman.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "worker/packed_gemm_kernel.h"
#include "worker/startup.h"
#include "worker/vector_isa.h"

namespace {

namespace pg = ablate::packed_gemm;

constexpr size_t kHugePage = size_t{2} << 20;

// An anonymous mapping of `bytes`, 2 MiB aligned, advised for or against
// huge pages before its first touch, and touched. Exits when the kernel
// refuses either, rather than compare 4 KiB pages with themselves.
class Buffer {
 public:
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(size_t bytes, bool huge) : length_(bytes + kHugePage) {
    base_ = mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) {
      std::perror("mmap");
      std::exit(1);
    }
    const uintptr_t aligned =
        (reinterpret_cast<uintptr_t>(base_) + kHugePage - 1) & ~uintptr_t{kHugePage - 1};
    data_ = reinterpret_cast<float*>(aligned);
    if (madvise(data_, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
      std::perror(huge ? "madvise(MADV_HUGEPAGE)" : "madvise(MADV_NOHUGEPAGE)");
      std::exit(1);
    }
    std::memset(data_, 0, bytes);
  }
  ~Buffer() { munmap(base_, length_); }
  float* data() const { return data_; }

 private:
  size_t length_;
  void* base_;
  float* data_;
};

// How the threads share the panels out.
enum class Share {
  kFixed,   // a contiguous share each
  kInTurn,  // one at a time, prefetching the next panel in memory
  kAhead,   // one at a time, claiming the next before running the one held
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// In how many rounds `b` beat `a` (the two ran back to back in each round).
int FasterRounds(const std::vector<double>& a, const std::vector<double>& b) {
  int faster = 0;
  for (size_t i = 0; i < a.size(); ++i) faster += b[i] > a[i] ? 1 : 0;
  return faster;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pages_bench: the packed kernel on 4 KiB pages against 2 MiB huge pages"};
  int rounds = 30, threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string format = "table";
  app.add_option("--rounds", rounds, "Alternations per shape")->check(CLI::Range(2, 100000));
  app.add_option("--threads", threads, "Threads splitting the panels")->check(CLI::Range(1, 1024));
  app.add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));
  std::string compare = "pages";
  app.add_option("--compare", compare,
                 "pages (4 KiB against huge), claim (panel claim order), prefetch (first tile "
                 "against spread) or depth (256 against the default depth block)")
      ->check(CLI::IsMember({"pages", "claim", "prefetch", "depth"}));
  CLI11_PARSE(app, argc, argv);
  const bool pages = compare == "pages";
  // The two ways' names, baseline first: JSON keys with "_gflops" appended,
  // table headers with spaces for underscores.
  const std::string depth_label = "depth_" + std::to_string(pg::kDepthBlock);
  const std::map<std::string, std::array<std::string, 2>> all_labels = {
      {"pages", {"small_pages", "huge_pages"}},
      {"claim", {"in_turn", "ahead"}},
      {"prefetch", {"first_tile", "spread"}},
      {"depth", {"depth_256", depth_label}}};
  const std::array<std::string, 2> labels = all_labels.at(compare);
  const auto header = [](std::string label) {
    std::replace(label.begin(), label.end(), '_', ' ');
    return label == "small pages" ? std::string("4 KiB pages") : label;
  };
  const ablate::VectorIsa isa = ablate::VectorIsaInUse();
  if (isa == ablate::VectorIsa::kBaseline) {
    std::fprintf(stderr, "pages_bench: this CPU has neither AVX-512 nor AVX2 with FMA\n");
    return 1;
  }
  const auto multiply =
      isa == ablate::VectorIsa::kAvx512 ? pg::MultiplyPanels : pg::MultiplyPanelsAvx2;
  struct Shape {
    int64_t m, k, n;
  };
  nlohmann::json results = nlohmann::json::array();
  for (const Shape s : {Shape{100, 2000, 4000}, Shape{100, 2000, 2000}, Shape{100, 4000, 2000}}) {
    const int64_t panels = (s.n + pg::kPanelWidth - 1) / pg::kPanelWidth;
    const size_t bytes = sizeof(float) * panels * s.k * pg::kPanelWidth;
    std::vector<float> a(s.m * s.k), a_packed(s.m * s.k), c(s.m * s.n);
    for (size_t i = 0; i < a.size(); ++i) a[i] = 0.01f * static_cast<float>(i % 13);
    for (int64_t b = 0; b < pg::RowBlockCount(s.m); ++b) {
      pg::PackRowBlock(a.data(), s.k, s.m, s.k, b, a_packed.data());
    }
    const double huge_before = ablate::HugePageMib();
    Buffer huge_pages(bytes, true);
    std::unique_ptr<Buffer> small_pages = pages ? std::make_unique<Buffer>(bytes, false) : nullptr;
    const double huge_mib = ablate::HugePageMib() - huge_before;
    // The two ways, baseline first.
    float* const weights[2] = {pages ? small_pages->data() : huge_pages.data(), huge_pages.data()};
    for (float* w : weights) {
      for (size_t i = 0; i < bytes / sizeof(float); ++i) w[i] = 0.001f * static_cast<float>(i % 7);
    }
    const bool claim = compare == "claim";
    const Share shares[2] = {pages ? Share::kFixed : (claim ? Share::kInTurn : Share::kAhead),
                             pages ? Share::kFixed : Share::kAhead};
    // Each way's schedule: Run's, but for the first way of the schedule
    // comparisons.
    pg::Schedule schedules[2];
    if (compare == "prefetch") schedules[0].prefetch = pg::Prefetch::kFirstTile;
    if (compare == "depth") schedules[0].depth_block = 256;
    std::vector<double> rates[2];
    const double flops = 2.0 * s.m * s.k * s.n;
    for (int round = 0; round < rounds + 1; ++round) {
      for (int i = 0; i < 2; ++i) {
        const int which = round % 2 == 0 ? i : 1 - i;  // the order flips every round
        const float* w = weights[which];
        const Share share = shares[which];
        const pg::Schedule& schedule = schedules[which];
        std::atomic<int64_t> next{0};
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> workers;
        for (int t = 0; t < threads; ++t) {
          workers.emplace_back([&, t] {
            if (share == Share::kFixed) {
              multiply(a_packed.data(), s.m, s.k, w, s.n, panels * t / threads,
                       panels * (t + 1) / threads, -1, schedule, 0.0f, c.data(), s.n);
              return;
            }
            for (int64_t p = next++; p < panels;) {
              const int64_t then = share == Share::kAhead ? next++ : p + 1;
              multiply(a_packed.data(), s.m, s.k, w, s.n, p, p + 1, then, schedule, 0.0f, c.data(),
                       s.n);
              p = share == Share::kAhead ? then : next++;
            }
          });
        }
        for (std::thread& worker : workers) worker.join();
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (round > 0) rates[which].push_back(flops / seconds / 1e9);  // round 0 warms up
      }
    }
    results.push_back({{"m", s.m},
                       {"k", s.k},
                       {"n", s.n},
                       {"weights_mib", bytes / 1048576.0},
                       {"huge_page_mib", huge_mib},
                       {labels[0] + "_gflops", Median(rates[0])},
                       {labels[1] + "_gflops", Median(rates[1])},
                       {"ratio", Median(rates[1]) / Median(rates[0])},
                       {"faster_rounds", FasterRounds(rates[0], rates[1])},
                       {"rounds", rounds}});
  }
  if (format == "json") {
    std::printf("%s\n", nlohmann::json{{"threads", threads},
                                       {"isa", ablate::VectorIsaName(isa)},
                                       {"thp_mode", ablate::TransparentHugePageMode()},
                                       {"compare", compare},
                                       {"shapes", results}}
                            .dump()
                            .c_str());
    return 0;
  }
  std::printf(
      "%d threads, %s kernel, THP mode %s; median GFLOP/s of %d alternating calls; \"faster\": "
      "rounds in which the second beat the first\n",
      threads, ablate::VectorIsaName(isa), ablate::TransparentHugePageMode().c_str(), rounds);
  std::printf("  %-16s %8s %13s %13s %8s %8s\n", "m x k x n", "MiB", header(labels[0]).c_str(),
              header(labels[1]).c_str(), "ratio", "faster");
  for (const auto& r : results) {
    char name[64];
    std::snprintf(name, sizeof(name), "%lldx%lldx%lld",
                  static_cast<long long>(r["m"].get<int64_t>()),
                  static_cast<long long>(r["k"].get<int64_t>()),
                  static_cast<long long>(r["n"].get<int64_t>()));
    std::printf(
        "  %-16s %8.0f %13.1f %13.1f %8.3f %8s  (%.0f MiB on huge pages)\n", name,
        r["weights_mib"].get<double>(), r[labels[0] + "_gflops"].get<double>(),
        r[labels[1] + "_gflops"].get<double>(), r["ratio"].get<double>(),
        (std::to_string(r["faster_rounds"].get<int>()) + "/" + std::to_string(rounds)).c_str(),
        r["huge_page_mib"].get<double>());
  }
  return 0;
}
