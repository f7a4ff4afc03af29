#include "coordinator/checkpoint_manager.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <optional>
#include <set>

#include "coordinator/job_manager.h"
#include "store/events.h"

namespace ablate {

namespace fs = std::filesystem;

// A very large model with optimizer state; anything bigger is a mistake.
constexpr int64_t kMaxCheckpointBytes = int64_t{64} << 30;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes) { EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()); }
  std::string HexDigest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(ctx_, digest, &size);
    std::string hex;
    for (unsigned int i = 0; i < size; ++i) hex += fmt::format("{:02x}", digest[i]);
    return hex;
  }

 private:
  EVP_MD_CTX* ctx_;
};

namespace {

Status ErrnoStatus(const std::string& what, int error) {
  return Status::Unavailable(fmt::format("{}: {}", what, std::strerror(error)));
}

bool IsLowerHex(const std::string& text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Status ValidateInfo(const v1::CheckpointInfo& info) {
  if (info.step() <= 0) return Status::InvalidArgument("checkpoint step must be positive");
  if (info.total_bytes() < 0 || info.total_bytes() > kMaxCheckpointBytes) {
    return Status::InvalidArgument(
        fmt::format("checkpoint size {} outside [0, {}]", info.total_bytes(), kMaxCheckpointBytes));
  }
  if (info.sha256_hex().size() != 64 || !IsLowerHex(info.sha256_hex())) {
    return Status::InvalidArgument("sha256_hex must be 64 lowercase hex digits");
  }
  return Status::OK();
}

// The file name a checkpoint is stored under: the same upload always maps to
// the same name, a different one never does.
std::string CheckpointFileName(int64_t job_id, const v1::CheckpointInfo& info) {
  return fmt::format("job-{}-step-{}-{}.ckpt", job_id, info.step(),
                     info.sha256_hex().substr(0, 16));
}

Status FsyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + dir, errno);
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  return rc == 0 ? Status::OK() : ErrnoStatus("fsync " + dir, error);
}

void RemoveQuietly(const std::string& path) { ::unlink(path.c_str()); }

}  // namespace

CheckpointUpload::CheckpointUpload(int64_t job_id, int64_t lease_token, v1::CheckpointInfo info,
                                   std::string temp, int fd)
    : job_id_(job_id),
      lease_token_(lease_token),
      info_(std::move(info)),
      temp_path_(std::move(temp)),
      fd_(fd),
      sha_(std::make_unique<Sha256>()) {}

CheckpointUpload::~CheckpointUpload() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_path_.empty()) RemoveQuietly(temp_path_);
}

Status CheckpointUpload::Append(std::string_view chunk) {
  if (chunk.size() > kCheckpointChunkBytes) {
    return Status::InvalidArgument(fmt::format("checkpoint chunk of {} bytes; at most {}",
                                               chunk.size(), kCheckpointChunkBytes));
  }
  if (received_ + static_cast<int64_t>(chunk.size()) > info_.total_bytes()) {
    return Status::InvalidArgument(
        fmt::format("checkpoint stream longer than the announced {} bytes", info_.total_bytes()));
  }
  sha_->Update(chunk);
  while (!chunk.empty()) {
    ssize_t n = ::write(fd_, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("writing " + temp_path_, errno);
    chunk.remove_prefix(static_cast<size_t>(n));
    received_ += n;
  }
  return Status::OK();
}

CheckpointDownload::~CheckpointDownload() { ::close(fd_); }

StatusOr<bool> CheckpointDownload::Read(std::string* chunk) {
  int64_t left = info_.total_bytes() - sent_;
  chunk->clear();
  if (left == 0) return false;
  chunk->resize(static_cast<size_t>(std::min<int64_t>(left, kCheckpointChunkBytes)));
  size_t filled = 0;
  while (filled < chunk->size()) {
    ssize_t n = ::read(fd_, chunk->data() + filled, chunk->size() - filled);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("reading a checkpoint", errno);
    if (n == 0) return Status::DataLoss("checkpoint file is shorter than recorded");
    filled += static_cast<size_t>(n);
  }
  sent_ += static_cast<int64_t>(filled);
  return true;
}

CheckpointManager::CheckpointManager(std::string dir, Writer* writer, Clock* clock)
    : dir_(std::move(dir)), writer_(writer), clock_(clock), io_(std::make_unique<TaskRunner>()) {}

CheckpointManager::~CheckpointManager() = default;

Status CheckpointManager::Start() {
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error) return Status::Unavailable("creating " + dir_ + ": " + error.message());

  std::set<std::string> referenced;
  std::promise<Status> listed;
  writer_->Submit(
      [&referenced](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(
            Rows rows,
            db.Query("SELECT checkpoint_file FROM jobs WHERE checkpoint_file IS NOT NULL"));
        while (true) {
          ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
          if (!row) return Status::OK();
          referenced.insert(rows.Text(0));
        }
      },
      [&listed](Status status) { listed.set_value(std::move(status)); });
  ABLATE_RETURN_IF_ERROR(listed.get_future().get());

  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, error)) {
    std::string name = entry.path().filename().string();
    bool ours = name.rfind("job-", 0) == 0;
    bool temp = name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    bool unreferenced = !referenced.count(name);
    if (ours && (temp || unreferenced)) RemoveQuietly(entry.path().string());
  }
  if (error) return Status::Unavailable("listing " + dir_ + ": " + error.message());
  return Status::OK();
}

void CheckpointManager::BeginUpload(const v1::UploadCheckpointRequest& first,
                                    Callback<std::unique_ptr<CheckpointUpload>> done) {
  Status invalid = ValidateInfo(first.info());
  if (!invalid.ok()) return done(invalid);
  int64_t job_id = first.job_id();
  int64_t token = first.lease_token();
  v1::CheckpointInfo info = first.info();
  writer_->Submit(
      [job_id, token](Database& db) { return JobManager::CheckLease(db, job_id, token).status(); },
      [this, job_id, token, info, done = std::move(done)](Status status) {
        io_->Post([this, job_id, token, info, done, status] {
          if (!status.ok()) return done(status);
          static std::atomic<uint64_t> uploads{0};
          std::string temp =
              fmt::format("{}/job-{}-upload-{}.tmp", dir_, job_id, uploads.fetch_add(1));
          int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
          if (fd < 0) return done(ErrnoStatus("creating " + temp, errno));
          done(std::unique_ptr<CheckpointUpload>(
              new CheckpointUpload(job_id, token, info, std::move(temp), fd)));
        });
      });
}

void CheckpointManager::FinishUpload(std::unique_ptr<CheckpointUpload> upload,
                                     v1::UploadCheckpointResponse* reply, Writer::Done done) {
  Status verified;
  if (upload->received_ != upload->info_.total_bytes()) {
    verified = Status::DataLoss(fmt::format("checkpoint truncated: {} of {} bytes arrived",
                                            upload->received_, upload->info_.total_bytes()));
  } else if (std::string digest = upload->sha_->HexDigest(); digest != upload->info_.sha256_hex()) {
    verified = Status::DataLoss(fmt::format("checkpoint checksum mismatch: got {}, announced {}",
                                            digest, upload->info_.sha256_hex()));
  }
  if (!verified.ok()) {
    upload.reset();  // removes the file before the caller hears of it
    return done(verified);
  }
  std::shared_ptr<CheckpointUpload> shared(std::move(upload));
  io_->Post([this, shared, reply, done = std::move(done)]() mutable {
    CheckpointUpload& u = *shared;
    std::string final_path = dir_ + "/" + CheckpointFileName(u.job_id_, u.info_);
    if (::fsync(u.fd_) != 0) return done(ErrnoStatus("fsync " + u.temp_path_, errno));
    ::close(u.fd_);
    u.fd_ = -1;
    if (::rename(u.temp_path_.c_str(), final_path.c_str()) != 0) {
      return done(ErrnoStatus("renaming " + u.temp_path_, errno));
    }
    u.temp_path_.clear();
    Status synced = FsyncDirectory(dir_);
    if (!synced.ok()) return done(synced);
    Commit(std::move(shared), std::move(final_path), reply, std::move(done));
  });
}

void CheckpointManager::Commit(std::shared_ptr<CheckpointUpload> upload, std::string final_path,
                               v1::UploadCheckpointResponse* reply, Writer::Done done) {
  std::string name = CheckpointFileName(upload->job_id_, upload->info_);
  // The file the job had before, once the commit read it.
  auto previous = std::make_shared<std::optional<std::string>>();
  writer_->Submit(
      [this, upload, name, previous](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(JobRow job,
                                JobManager::CheckLease(db, upload->job_id_, upload->lease_token_));
        ABLATE_ASSIGN_OR_RETURN(
            Rows rows,
            db.Query("SELECT COALESCE(checkpoint_file, '') FROM jobs WHERE id = ?", job.id));
        ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
        if (!found) return Status::Internal("job vanished");
        *previous = rows.Text(0);
        if (**previous == name) return Status::OK();  // the same upload again
        const v1::CheckpointInfo& info = upload->info_;
        if (info.step() < job.checkpoint_step) {
          return Status::FailedPrecondition(
              fmt::format("checkpoint at step {} is older than the stored one at step {}",
                          info.step(), job.checkpoint_step));
        }
        ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
            UPDATE jobs SET checkpoint_step = ?, checkpoint_file = ?, checkpoint_bytes = ?,
                            checkpoint_sha256 = ?
            WHERE id = ?)sql",
                                      info.step(), name, info.total_bytes(), info.sha256_hex(),
                                      job.id));
        return RecordEvent(db,
                           {clock_->NowMs(), job.sweep_id, job.id, job.lease_owner, "checkpoint",
                            fmt::format("step {}, {} bytes", info.step(), info.total_bytes())});
      },
      [this, upload, name, final_path, previous, reply, done = std::move(done)](Status status) {
        io_->Post([this, upload, name, final_path, previous, reply, done, status] {
          bool committed_elsewhere = previous->has_value() && **previous != name;
          if (status.ok()) {
            reply->set_checkpoint_step(upload->info_.step());
            if (committed_elsewhere && !(*previous)->empty())
              RemoveQuietly(dir_ + "/" + **previous);
          } else if (committed_elsewhere) {
            // Never committed; if the outcome is unknown, Start() cleans up.
            RemoveQuietly(final_path);
          }
          done(status);
        });
      });
}

void CheckpointManager::BeginDownload(const v1::DownloadCheckpointRequest& request,
                                      Callback<std::unique_ptr<CheckpointDownload>> done) {
  Open(request.job_id(), request.lease_token(), std::move(done));
}

void CheckpointManager::BeginJobDownload(int64_t job_id,
                                         Callback<std::unique_ptr<CheckpointDownload>> done) {
  Open(job_id, std::nullopt, std::move(done));
}

void CheckpointManager::Open(int64_t job_id, std::optional<int64_t> lease_token,
                             Callback<std::unique_ptr<CheckpointDownload>> done) {
  auto found = std::make_shared<std::pair<std::string, v1::CheckpointInfo>>();
  writer_->Submit(
      [job_id, lease_token, found](Database& db) -> Status {
        if (lease_token) {
          ABLATE_RETURN_IF_ERROR(JobManager::CheckLease(db, job_id, *lease_token).status());
        } else {
          ABLATE_RETURN_IF_ERROR(JobManager::ReadJob(db, job_id).status());
        }
        ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
            SELECT checkpoint_file, checkpoint_step, checkpoint_bytes, checkpoint_sha256
            FROM jobs WHERE id = ? AND checkpoint_file IS NOT NULL)sql",
                                                    job_id));
        ABLATE_ASSIGN_OR_RETURN(bool has, rows.Next());
        if (!has) return Status::NotFound(fmt::format("job {} has no checkpoint", job_id));
        found->first = rows.Text(0);
        found->second.set_step(rows.Int(1));
        found->second.set_total_bytes(rows.Int(2));
        found->second.set_sha256_hex(rows.Text(3));
        return Status::OK();
      },
      [this, found, done = std::move(done)](Status status) {
        io_->Post([this, found, done, status] {
          if (!status.ok()) return done(status);
          std::string path = dir_ + "/" + found->first;
          int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
          if (fd < 0) {
            return done(Status::DataLoss(
                fmt::format("checkpoint file {}: {}", path, std::strerror(errno))));
          }
          struct stat st;
          if (::fstat(fd, &st) != 0 || st.st_size != found->second.total_bytes()) {
            ::close(fd);
            return done(Status::DataLoss("checkpoint file " + path + " has the wrong size"));
          }
          done(std::unique_ptr<CheckpointDownload>(new CheckpointDownload(found->second, fd)));
        });
      });
}

void CheckpointManager::Remove(const std::string& name) {
  io_->Post([this, name] { RemoveQuietly(dir_ + "/" + name); });
}

}  // namespace ablate
