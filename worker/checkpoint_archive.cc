#include "worker/checkpoint_archive.h"

#include <sys/stat.h>
#include <zip.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

namespace ablate {

namespace {

namespace fs = std::filesystem;

struct ZipCloser {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
using ZipPtr = std::unique_ptr<zip_t, ZipCloser>;

std::string ZipError(zip_t* archive) { return zip_strerror(archive); }

std::string OpenError(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

// Names that stay inside the folder they are extracted into.
bool SafeEntryName(const std::string& name) {
  if (name.empty() || name[0] == '/' || name.find('\\') != std::string::npos) return false;
  for (const fs::path& part : fs::path(name)) {
    if (part == "..") return false;
  }
  return true;
}

bool IsLink(zip_t* archive, zip_uint64_t index) {
  zip_uint8_t system = 0;
  zip_uint32_t attributes = 0;
  if (zip_file_get_external_attributes(archive, index, 0, &system, &attributes) != 0) return false;
  return system == ZIP_OPSYS_UNIX && S_ISLNK(attributes >> 16);
}

Status ExtractFile(zip_t* archive, zip_uint64_t index, const fs::path& target,
                   const std::string& name) {
  std::unique_ptr<zip_file_t, decltype(&zip_fclose)> in(zip_fopen_index(archive, index, 0),
                                                        &zip_fclose);
  if (!in) return Status::DataLoss("checkpoint archive entry " + name + ": " + ZipError(archive));
  std::error_code error;
  fs::create_directories(target.parent_path(), error);
  std::ofstream out(target, std::ios::binary | std::ios::trunc);
  if (error || !out) return Status::Internal("cannot write " + target.string());
  std::vector<char> buffer(1 << 20);
  zip_int64_t got;
  while ((got = zip_fread(in.get(), buffer.data(), buffer.size())) > 0) {
    out.write(buffer.data(), got);
  }
  if (got < 0) return Status::DataLoss("checkpoint archive entry " + name + " is corrupt");
  out.close();
  if (!out) return Status::Internal("cannot write " + target.string());
  return Status::OK();
}

}  // namespace

Status ArchiveDirectory(const std::string& dir, const std::string& archive_path,
                        const std::string& comment) {
  int code = 0;
  ZipPtr archive(zip_open(archive_path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code));
  if (!archive) return Status::Internal("cannot create " + archive_path + ": " + OpenError(code));
  int added = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    const std::string name = fs::relative(it->path(), dir).generic_string();
    if (it->is_directory() && !it->is_symlink()) {
      if (zip_dir_add(archive.get(), name.c_str(), ZIP_FL_ENC_UTF_8) < 0) {
        return Status::Internal("cannot archive " + it->path().string() + ": " +
                                ZipError(archive.get()));
      }
      ++added;
      continue;
    }
    if (!it->is_regular_file() || it->is_symlink()) continue;
    zip_source_t* source = zip_source_file(archive.get(), it->path().c_str(), 0, -1);
    const zip_int64_t index =
        source == nullptr ? -1
                          : zip_file_add(archive.get(), name.c_str(), source, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      if (source != nullptr) zip_source_free(source);
      return Status::Internal("cannot archive " + it->path().string() + ": " +
                              ZipError(archive.get()));
    }
    zip_set_file_compression(archive.get(), static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);
    ++added;
  }
  if (error) return Status::Internal("cannot read " + dir + ": " + error.message());
  // libzip writes no file for an archive without entries.
  if (added == 0) {
    return Status::FailedPrecondition("the checkpoint directory " + dir + " is empty");
  }
  if (zip_set_archive_comment(archive.get(), comment.data(),
                              static_cast<zip_uint16_t>(comment.size())) != 0) {
    return Status::Internal("cannot archive " + dir + ": " + ZipError(archive.get()));
  }
  if (zip_close(archive.get()) != 0) {
    return Status::Internal("cannot write " + archive_path + ": " + ZipError(archive.get()));
  }
  (void)archive.release();
  return Status::OK();
}

StatusOr<std::string> ExtractArchive(const std::string& archive_path, const std::string& dir) {
  int code = 0;
  ZipPtr archive(zip_open(archive_path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code));
  if (!archive) {
    return Status::DataLoss("checkpoint archive " + archive_path + ": " + OpenError(code));
  }
  const zip_int64_t entries = zip_get_num_entries(archive.get(), 0);
  // Every name is checked before anything is written.
  for (zip_int64_t i = 0; i < entries; ++i) {
    const zip_uint64_t index = static_cast<zip_uint64_t>(i);
    const char* raw = zip_get_name(archive.get(), index, 0);
    const std::string name = raw == nullptr ? "" : raw;
    if (!SafeEntryName(name)) {
      return Status::InvalidArgument("checkpoint archive " + archive_path + ": entry \"" + name +
                                     "\" would be written outside the checkpoint directory");
    }
    if (IsLink(archive.get(), index)) {
      return Status::InvalidArgument("checkpoint archive " + archive_path + ": entry \"" + name +
                                     "\" is a link");
    }
  }
  for (zip_int64_t i = 0; i < entries; ++i) {
    const zip_uint64_t index = static_cast<zip_uint64_t>(i);
    const std::string name = zip_get_name(archive.get(), index, 0);
    const fs::path target = fs::path(dir) / name;
    if (name.back() == '/') {
      std::error_code error;
      fs::create_directories(target, error);
      if (error) return Status::Internal("cannot create " + target.string());
      continue;
    }
    ABLATE_RETURN_IF_ERROR(ExtractFile(archive.get(), index, target, name));
  }
  int length = 0;
  const char* comment = zip_get_archive_comment(archive.get(), &length, 0);
  return std::string(comment == nullptr ? "" : comment, static_cast<size_t>(length));
}

}  // namespace ablate
