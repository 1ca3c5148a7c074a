// SeedCorpus writes the files of one fuzzer's seed corpus, for the seed
// generators (make_*_seeds.cc, make_seed_corpus.cc): one file per input,
// named for what it exercises, and a one-line report at the end. The bytes
// of each input (control prefix and stream) are the generator's business.
#ifndef MOONPOOL_FUZZ_SEED_CORPUS_H_
#define MOONPOOL_FUZZ_SEED_CORPUS_H_

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

namespace moonpool::fuzz {

class SeedCorpus {
 public:
  explicit SeedCorpus(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // Writes `bytes` as the input `name`; exits with a message if it cannot.
  void Write(const std::string& name, const std::string& bytes) {
    const std::filesystem::path path = dir_ / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", path.string().c_str());
      std::exit(1);
    }
    ++files_;
    bytes_ += bytes.size();
  }

  void Report() const {
    std::printf("wrote %d files, %zu bytes, to %s\n", files_, bytes_,
                dir_.string().c_str());
  }

 private:
  std::filesystem::path dir_;
  int files_ = 0;
  size_t bytes_ = 0;
};

}  // namespace moonpool::fuzz

#endif  // MOONPOOL_FUZZ_SEED_CORPUS_H_
