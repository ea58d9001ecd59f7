/*
 * loom-confine: the last step between a node (root) and a task's command.
 *
 *   loom-confine UID GID NPROC CGROUP_PROCS_FILES -- COMMAND [ARG]...
 *
 * In this order, so that nothing of the task ever runs outside its limits or
 * with the node's privileges:
 *   1. joins its cgroups: writes its own pid into each cgroup.procs file of the
 *      comma-separated list ("-" = none). The node created them (root-owned,
 *      so the task cannot write itself out of them). Doing it here, before the
 *      exec, closes the race of moving a task in after it started.
 *   2. drops every capability from its bounding set and the ambient set, so
 *      nothing it runs later (a setuid-root binary included) can get one back;
 *   3. sets no_new_privs (setuid/setgid bits and file capabilities stop
 *      working for it and all its descendants);
 *   4. sets RLIMIT_NPROC to NPROC ("-" = unchanged): with a uid of its own,
 *      that bounds what the task can fork even where no pids cgroup exists;
 *   5. switches to UID/GID with no supplementary groups (all of real,
 *      effective and saved ids, so it cannot switch back). Going from root to
 *      a non-zero uid clears the permitted and effective capability sets.
 *   6. restores umask 022 (the node runs with 077 so its own files stay
 *      private) and execs COMMAND, looked up on the PATH of its environment.
 * UID "-" keeps the current identity (a node that runs tasks as itself);
 * steps 2-5 are then skipped too, since there is nothing to protect from.
 *
 * Any failure before the exec is fatal: the task must not run half-confined.
 * Exit 125 for a failed confinement step, 127 for a command that is not
 * found, 126 for one that cannot be executed, with the reason on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

static void fail(int code, const char *what, const char *detail) {
  dprintf(2, "loom: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "", strerror(errno));
  _exit(code);
}

static long parse_id(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || errno != 0 || v <= 0 || v > 0x7fffffffL) {
    dprintf(2, "loom-confine: bad %s \"%s\" (a positive number, or - for none)\n", what, s);
    _exit(125);
  }
  return v;
}

static void join_cgroups(char *list) {
  if (strcmp(list, "-") == 0) return;
  for (char *file = strtok(list, ","); file; file = strtok(NULL, ",")) {
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail(125, "cannot join cgroup", file);
    /* "0" means the writing process itself. */
    if (write(fd, "0", 1) != 1) fail(125, "cannot join cgroup", file);
    close(fd);
  }
}

static void drop_privileges(uid_t uid, gid_t gid, long nproc) {
  /* The bounding set can only be lowered while we still hold CAP_SETPCAP. */
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) fail(125, "cannot drop capability from the bounding set", NULL);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) fail(125, "cannot clear ambient capabilities", NULL);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(125, "cannot set no_new_privs", NULL);
  if (nproc > 0) {
    struct rlimit rl = {.rlim_cur = (rlim_t)nproc, .rlim_max = (rlim_t)nproc};
    if (setrlimit(RLIMIT_NPROC, &rl) != 0) fail(125, "cannot set the process limit", NULL);
  }
  if (setgroups(0, NULL) != 0) fail(125, "cannot clear supplementary groups", NULL);
  if (setresgid(gid, gid, gid) != 0) fail(125, "cannot switch group", NULL);
  if (setresuid(uid, uid, uid) != 0) fail(125, "cannot switch user", NULL);
  /* Belt and braces: a kernel that let us keep root would be a broken confinement. */
  if (geteuid() == 0 || getuid() == 0) {
    errno = EPERM;
    fail(125, "still root after switching user", NULL);
  }
}

int main(int argc, char **argv) {
  if (argc < 7 || strcmp(argv[5], "--") != 0) {
    dprintf(2, "usage: loom-confine UID|- GID|- NPROC|- CGROUP_PROCS_FILES|- -- COMMAND [ARG]...\n");
    return 125;
  }
  int keep_identity = strcmp(argv[1], "-") == 0;
  uid_t uid = keep_identity ? 0 : (uid_t)parse_id(argv[1], "uid");
  gid_t gid = keep_identity ? 0 : (gid_t)parse_id(argv[2], "gid");
  long nproc = strcmp(argv[3], "-") == 0 ? 0 : parse_id(argv[3], "process limit");
  join_cgroups(argv[4]);
  if (!keep_identity) drop_privileges(uid, gid, nproc);
  umask(022);
  char **command = argv + 6;
  execvp(command[0], command);
  fail(errno == ENOENT ? 127 : 126, "cannot run", command[0]);
  return 126;
}
