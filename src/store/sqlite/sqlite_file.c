/*
 * sqlite_file — notices that the database file was deleted or replaced
 * under a running store (see sqlite_int.h).
 *
 * DESIGN: SQLite keeps writing to a file it has open even after its name
 * is gone; everything committed then is lost at the next start. So the
 * store remembers the device and inode its path named at open, and the
 * writer thread checks, once per batch and before anything is committed,
 * that the path still names that file (stat(2): a microsecond, nothing
 * next to an fsync). Once it does not, every batch fails — no 202 that
 * cannot be kept, /readyz 503 through the probe — and one error record
 * says why. There is no way back short of a restart: a file put back at
 * the path is not the one the store has open.
 */
#include "sqlite_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

int sqlite_file_watch(struct sqlite_store *st, const char *path)
{
	struct stat sb;

	if (stat(path, &sb) < 0)
		return -1;
	st->file_path = strdup(path);
	if (!st->file_path)
		return -1;
	st->file_dev = sb.st_dev;
	st->file_ino = sb.st_ino;
	return 0;
}

int sqlite_file_gone(struct sqlite_store *st)
{
	struct stat sb;
	const char *why;

	if (st->file_gone)
		return 1;
	if (!st->file_path)
		return 0;
	if (stat(st->file_path, &sb) < 0) {
		/* only a missing name means the file is gone; EACCES, EIO
		 * and the like are left to SQLite's own errors */
		if (errno != ENOENT && errno != ENOTDIR)
			return 0;
		why = "deleted";
	} else if (sb.st_dev != st->file_dev || sb.st_ino != st->file_ino) {
		why = "replaced by another file";
	} else {
		return 0;
	}
	st->file_gone = 1;
	log_kv(LOG_ERROR, "store file gone", "path", st->file_path, "error",
	       why, "action",
	       "nothing more is accepted; restart triggerd to open a store",
	       LOG_END);
	return 1;
}
