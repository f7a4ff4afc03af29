#include "cli/source.h"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "common/config_hash.h"
#include "common/file.h"
#include "store/store.h"

namespace ablate {

namespace {

class DatabaseSource final : public Source {
 public:
  DatabaseSource(std::string path, std::string checkpoint_dir, std::unique_ptr<Database> db)
      : path_(std::move(path)),
        checkpoint_dir_(std::move(checkpoint_dir)),
        db_(std::move(db)),
        reader_(db_.get()) {}

  std::string Describe() const override { return "database " + path_; }
  Status ListSweeps(v1::ListSweepsResponse* out) override {
    return reader_.ListSweeps(out).WithContext(path_);
  }
  Status GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* out) override {
    return reader_.GetStatus(request, out);
  }
  Status ListWorkers(v1::ListWorkersResponse* out) override {
    return reader_.ListWorkers(out).WithContext(path_);
  }
  Status Results(const v1::ResultsRequest& request, v1::ResultsResponse* out) override {
    return reader_.Results(request, out);
  }
  Status Curves(const v1::CurvesRequest& request, v1::CurvesResponse* out) override {
    return reader_.Curves(request, out);
  }
  Status GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* out) override {
    return reader_.GetJob(request, out);
  }

  StatusOr<v1::CheckpointInfo> FetchCheckpoint(int64_t job_id, const std::string& path) override {
    ABLATE_ASSIGN_OR_RETURN(auto checkpoint, reader_.JobCheckpoint(job_id));
    const auto& [name, info] = checkpoint;
    const std::string file = checkpoint_dir_ + "/" + name;
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      return Status::DataLoss("checkpoint of job " + std::to_string(job_id) + ": " + file +
                              " cannot be read (with --db, --checkpoint-dir names the "
                              "coordinator's checkpoint directory)");
    }
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (static_cast<int64_t>(data.size()) != info.total_bytes() ||
        Sha256Hex(data) != info.sha256_hex()) {
      return Status::DataLoss("checkpoint of job " + std::to_string(job_id) + ": " + file +
                              " does not match the size or SHA-256 the database recorded");
    }
    ABLATE_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(path));
    ABLATE_RETURN_IF_ERROR(out.Append(data));
    ABLATE_RETURN_IF_ERROR(out.Commit());
    return info;
  }

 private:
  const std::string path_;
  const std::string checkpoint_dir_;
  const std::unique_ptr<Database> db_;
  StoreReader reader_;
};

class CoordinatorSource final : public Source {
 public:
  explicit CoordinatorSource(std::shared_ptr<SweepsClient> client) : client_(std::move(client)) {}

  std::string Describe() const override { return "coordinator " + client_->address(); }
  Status ListSweeps(v1::ListSweepsResponse* out) override { return client_->ListSweeps(out); }
  Status GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* out) override {
    return client_->GetStatus(request, out);
  }
  Status ListWorkers(v1::ListWorkersResponse* out) override { return client_->ListWorkers(out); }
  Status Results(const v1::ResultsRequest& request, v1::ResultsResponse* out) override {
    return client_->Results(request, out);
  }
  Status Curves(const v1::CurvesRequest& request, v1::CurvesResponse* out) override {
    return client_->Curves(request, out);
  }
  Status GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* out) override {
    return client_->GetJob(request, out);
  }

  StatusOr<v1::CheckpointInfo> FetchCheckpoint(int64_t job_id, const std::string& path) override {
    return client_->GetCheckpoint(job_id, path);
  }

 private:
  const std::shared_ptr<SweepsClient> client_;
};

// The id of the one sweep `ref` names; NotFound when it names none.
StatusOr<int64_t> LookUp(Source* source, const v1::SweepRef& ref) {
  v1::GetStatusRequest request;
  *request.mutable_sweep() = ref;
  v1::GetStatusResponse response;
  ABLATE_RETURN_IF_ERROR(source->GetStatus(request, &response));
  if (response.sweeps_size() != 1) {
    return Status::Internal("a status request for one sweep answered " +
                            std::to_string(response.sweeps_size()));
  }
  return response.sweeps(0).sweep().id();
}

}  // namespace

void AddSourceFlags(CLI::App* app, SourceOptions* options) {
  app->add_option("--db", options->db_path,
                  "Read this coordinator database directly, read-only (no coordinator needed)");
  AddClientFlags(app, &options->client);
}

v1::SweepRef ParseSweepRef(const std::string& arg) {
  v1::SweepRef ref;
  const bool digits =
      !arg.empty() && arg.size() <= 18 && arg.find_first_not_of("0123456789") == std::string::npos;
  if (digits) {
    ref.set_id(std::stoll(arg));
  } else {
    ref.set_name(arg);
  }
  return ref;
}

StatusOr<std::unique_ptr<Source>> Source::Open(const SourceOptions& options) {
  if (!options.db_path.empty()) {
    const char* env = std::getenv("ABLATE_COORDINATOR");
    if (!options.client.address.empty() && (env == nullptr || options.client.address != env)) {
      return Status::InvalidArgument("--db " + options.db_path + " and --coordinator " +
                                     options.client.address + ": give one, not both");
    }
    auto db = OpenStoreReadOnly(options.db_path);
    if (!db.ok()) {
      const Status& s = db.status();
      // SQLite's own messages ("file is not a database") do not say which file.
      if (s.message().find(options.db_path) != std::string::npos) return s;
      return Status(s.code(),
                    options.db_path + " is not a readable ablate database: " + s.message());
    }
    std::string checkpoint_dir =
        options.checkpoint_dir.empty() ? options.db_path + ".ckpt" : options.checkpoint_dir;
    return std::unique_ptr<Source>(
        new DatabaseSource(options.db_path, std::move(checkpoint_dir), std::move(db).value()));
  }
  if (options.client.address.empty()) {
    return Status::InvalidArgument(
        "nothing to read from: pass --db PATH, or --coordinator HOST:PORT (or set "
        "ABLATE_COORDINATOR)");
  }
  ABLATE_ASSIGN_OR_RETURN(std::unique_ptr<SweepsClient> client,
                          SweepsClient::Connect(options.client));
  return Over(std::move(client));
}

std::unique_ptr<Source> Source::Over(std::shared_ptr<SweepsClient> client) {
  return std::make_unique<CoordinatorSource>(std::move(client));
}

StatusOr<int64_t> Source::ResolveSweep(const std::string& arg) {
  const v1::SweepRef ref = ParseSweepRef(arg);
  StatusOr<int64_t> id = LookUp(this, ref);
  if (id.ok() || id.status().code() != Status::kNotFound || !ref.has_id()) return id;
  v1::SweepRef by_name;
  by_name.set_name(arg);
  StatusOr<int64_t> named = LookUp(this, by_name);
  if (named.ok() || named.status().code() != Status::kNotFound) return named;
  return Status::NotFound("no sweep with id or name '" + arg + "'");
}

}  // namespace ablate
