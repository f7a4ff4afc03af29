#include "common/subprocess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/temp_dir.h"
#include "common/test_files.h"

namespace ablate {
namespace {

using testing::ReadFile;

SpawnOptions Shell(const std::string& script) {
  SpawnOptions options;
  options.argv = {"/bin/sh", "-c", script};
  return options;
}

TEST(SubprocessTest, ExitCodesAndSignalsReadAsTheShellWrites) {
  auto exited = Spawn(Shell("exit 3"));
  ASSERT_TRUE(exited.ok()) << exited.status().ToString();
  EXPECT_EQ(*WaitForExit(*exited), 3);
  auto killed = Spawn(Shell("kill -TERM $$"));
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(*WaitForExit(*killed), 128 + SIGTERM);
}

TEST(SubprocessTest, AProgramThatCannotBeExecutedIsAnErrorNamingIt) {
  SpawnOptions options;
  options.argv = {"/nonexistent/program", "x"};
  auto pid = Spawn(options);
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.status().message().find("/nonexistent/program"), std::string::npos);
  EXPECT_NE(pid.status().message().find("No such file"), std::string::npos);

  options.argv = {};
  EXPECT_EQ(Spawn(options).status().code(), Status::kInvalidArgument);
}

TEST(SubprocessTest, StreamsGoWhereTheyAreToldAndTheEnvironmentIsOursPlusTheOverrides) {
  TempDir dir;
  const int out = open(dir.File("out").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  const int err = open(dir.File("err").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(out, 0);
  ASSERT_GE(err, 0);
  setenv("ABLATE_SUBPROCESS_TEST_KEPT", "kept", 1);
  SpawnOptions options = Shell(
      "echo \"$ABLATE_SUBPROCESS_TEST_KEPT $ABLATE_SUBPROCESS_TEST_SET\"; echo oops >&2; "
      "cat");
  options.env = {{"ABLATE_SUBPROCESS_TEST_SET", "set"}};
  options.stdout_fd = out;
  options.stderr_fd = err;
  options.stdin_null = true;  // cat reads nothing and ends
  auto pid = Spawn(options);
  close(out);
  close(err);
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(*WaitForExit(*pid), 0);
  EXPECT_EQ(ReadFile(dir.File("out")), "kept set\n");
  EXPECT_EQ(ReadFile(dir.File("err")), "oops\n");
}

TEST(SubprocessTest, ANewProcessGroupIsLedByTheChild) {
  SpawnOptions options = Shell("sleep 30");
  options.new_process_group = true;
  auto pid = Spawn(options);
  ASSERT_TRUE(pid.ok());
  // setpgid runs in the child before exec: wait for it to take effect.
  pid_t group = -1;
  for (int i = 0; i < 500 && (group = getpgid(*pid)) != *pid; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(group, *pid);
  EXPECT_NE(group, getpgrp());
  EXPECT_FALSE(PollExit(*pid).has_value());
  ASSERT_EQ(kill(-*pid, SIGKILL), 0);
  EXPECT_EQ(*WaitForExit(*pid), 128 + SIGKILL);
}

TEST(SubprocessTest, TheSignalMaskIsTheOneGiven) {
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  SpawnOptions options = Shell("kill -TERM $$; exit 7");
  options.signal_mask = blocked;
  auto pid = Spawn(options);
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(*WaitForExit(*pid), 7);  // the SIGTERM stayed pending
}

TEST(SubprocessTest, ExtraDescriptorsAndTheWorkingDirectoryReachTheChild) {
  TempDir dir;
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  SpawnOptions options = Shell("pwd >&3");
  options.extra_fds = {{3, fds[1]}};
  options.working_dir = dir.path();
  auto pid = Spawn(options);
  close(fds[1]);
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  EXPECT_EQ(*WaitForExit(*pid), 0);
  char buffer[4096];
  const ssize_t got = read(fds[0], buffer, sizeof(buffer));
  close(fds[0]);
  ASSERT_GT(got, 0);
  EXPECT_EQ(std::string(buffer, static_cast<size_t>(got)), dir.path() + "\n");
}

TEST(SubprocessTest, AMissingWorkingDirectoryIsAnError) {
  SpawnOptions options = Shell("true");
  options.working_dir = "/nonexistent/folder";
  EXPECT_FALSE(Spawn(options).ok());
}

TEST(SubprocessTest, TheDeathSignalEndsTheChildWhenItsParentDies) {
  TempDir dir;
  const std::string pid_file = dir.File("grandchild");
  // An intermediate process spawns the child with a death signal, writes its
  // pid, and exits: the child must then be killed.
  const pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    SpawnOptions options = Shell("sleep 30");
    options.death_signal = SIGKILL;
    auto pid = Spawn(options);
    if (!pid.ok()) _exit(1);
    std::ofstream(pid_file) << *pid;
    _exit(0);
  }
  ASSERT_EQ(*WaitForExit(middle), 0);
  pid_t grandchild = 0;
  std::ifstream(pid_file) >> grandchild;
  ASSERT_GT(grandchild, 0);
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    // Reparented to init (or a subreaper), so not ours to reap: poll its state.
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string pid_field, comm, state;
    gone = !(stat >> pid_field >> comm >> state) || state == "Z" || state == "X";
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone);
}

}  // namespace
}  // namespace ablate
