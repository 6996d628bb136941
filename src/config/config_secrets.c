/*
 * config_secrets — the `secrets` section: names bound to values read from
 * the environment, a file, or a systemd credential.
 *
 * DESIGN: runs on the loading thread, at start and at every reload, so a
 * rotated secret is picked up by SIGHUP. Values live only in the struct
 * config_secret array (and the views beside it that templates read); they
 * are wiped before being freed and never appear in a message: errors name
 * the secret and its source only. A secret that cannot be resolved is
 * still defined (empty), so references to it do not add a second,
 * misleading "undefined secret" error. A relative {file: PATH} is taken
 * from the config file's directory, not the working directory, so the
 * same config works wherever the daemon is started.
 */
#include "config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const secret_sources[] = {"env", "file", "credential"};

/* Reads a whole secret file into *out (malloc'd), without one trailing
 * newline. 0, or -1 with the reason in err. Never blocks: the file is
 * opened with O_NONBLOCK (a FIFO with no writer would block open() itself)
 * and must then be a regular file — a symlink to one is fine, as
 * Kubernetes mounts secrets — so a FIFO, socket or device is refused
 * before a byte is read, and the read is bounded by CONFIG_MAX_SECRET. */
static int secret_read(const char *path, char **out, size_t *outlen, char *err,
		       size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK),
	    rc = -1;

	if (fd < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "not a regular file (a FIFO, socket or "
			 "device cannot hold a secret)");
		goto out;
	}
	data = malloc(CONFIG_MAX_SECRET + 2);
	if (!data) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, data + len, CONFIG_MAX_SECRET + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONFIG_MAX_SECRET) {
			snprintf(err, errlen, "larger than %u KiB",
				 CONFIG_MAX_SECRET >> 10);
			goto out;
		}
	}
	/* Editors and `echo` end files with a newline; it is not the secret. */
	if (len && data[len - 1] == '\n')
		len--;
	if (len && data[len - 1] == '\r')
		len--;
	data[len] = '\0';
	*out = data;
	*outlen = len;
	data = NULL;
	rc = 0;
out:
	if (data)
		explicit_bzero(data, CONFIG_MAX_SECRET + 2);
	free(data);
	close(fd);
	return rc;
}

/* Resolves s from its source; reports at where (the source's value). */
static void secret_resolve(struct config_ld *ld, struct config_secret *s,
			   const struct cy_node *where)
{
	char err[256], *path = NULL;
	const char *kind = secret_sources[s->kind];

	if (s->kind == CONFIG_SECRET_ENV) {
		const char *v = getenv(s->source);
		if (!v) {
			config_err(
			    ld, where,
			    "secret \"%s\": environment variable %s is not set",
			    s->name, s->source);
			return;
		}
		s->len = strlen(v);
		s->value = config_strdup(ld, v);
		goto check;
	}
	if (s->kind == CONFIG_SECRET_CREDENTIAL) {
		const char *dir = getenv("CREDENTIALS_DIRECTORY");
		if (strchr(s->source, '/') || strcmp(s->source, ".") == 0 ||
		    strcmp(s->source, "..") == 0) {
			config_err(ld, where,
				   "secret \"%s\": a credential name cannot "
				   "contain '/' or be \".\" or \"..\"",
				   s->name);
			return;
		}
		if (!dir || !*dir) {
			config_err(ld, where,
				   "secret \"%s\": credential %s needs "
				   "$CREDENTIALS_DIRECTORY, which is not set "
				   "(systemd sets it for LoadCredential=)",
				   s->name, s->source);
			return;
		}
		if (asprintf(&path, "%s/%s", dir, s->source) < 0)
			path = NULL;
	} else if (s->source[0] != '/' && ld->dir) {
		if (asprintf(&path, "%s/%s", ld->dir, s->source) < 0)
			path = NULL;
	} else {
		path = strdup(s->source);
	}
	if (!path) {
		ld->oom = 1;
		config_err(ld, where, "out of memory");
		return;
	}
	if (secret_read(path, &s->value, &s->len, err, sizeof err) < 0)
		config_err(ld, where, "secret \"%s\": cannot read %s %s: %s",
			   s->name, kind, path, err);
	free(path);
check:
	if (s->value && s->len == 0)
		config_err(ld, where, "secret \"%s\": %s %s is empty", s->name,
			   kind, s->source);
}

/* One `name: value` entry of the section. */
static void secret_load(struct config_ld *ld, struct config_secret *s,
			const struct cy_node *v)
{
	if (v->kind == CY_SCALAR) {
		if (!config_string(ld, v, "a secret's value"))
			return;
		s->kind = CONFIG_SECRET_PLAIN;
		s->value = config_strdup(ld, v->text);
		s->len = v->len;
		if (!v->len)
			config_err(ld, v, "secret \"%s\" is empty", s->name);
		config_warn(
		    ld, v,
		    "secret \"%s\" is written in the config file; prefer {env: "
		    "NAME}, {file: PATH} or {credential: NAME}",
		    s->name);
		return;
	}
	if (v->kind != CY_MAP || v->n != 1) {
		config_check_keys(ld, v, secret_sources, 3, "a secret");
		config_err(ld, v,
			   "secret \"%s\" must be one of {env: NAME}, {file: "
			   "PATH} or {credential: NAME}",
			   s->name);
		return;
	}
	const struct cy_node *k = v->keys[0], *src = v->vals[0];
	size_t i;
	for (i = 0; i < 3; i++)
		if (k->kind == CY_SCALAR &&
		    strcmp(k->text, secret_sources[i]) == 0)
			break;
	if (i == 3) {
		config_check_keys(ld, v, secret_sources, 3, "a secret");
		return;
	}
	const char *text = config_string(ld, src, "a secret's source");
	if (!text)
		return;
	if (!*text) {
		config_err(ld, src, "secret \"%s\": the %s must not be empty",
			   s->name, secret_sources[i]);
		return;
	}
	s->kind = (enum config_secret_kind)i;
	s->source = config_strdup(ld, text);
	if (s->source)
		secret_resolve(ld, s, src);
}

void config_secrets_load(struct config_ld *ld, const struct cy_node *map)
{
	struct config *cfg = ld->cfg;

	if (!map || (map->kind == CY_SCALAR && map->type == CY_T_NULL))
		return;
	if (map->kind != CY_MAP) {
		config_err(ld, map,
			   "secrets must be a mapping of names to {env: NAME}, "
			   "{file: PATH} or {credential: NAME}, not %s",
			   config_yaml_what(map));
		return;
	}
	size_t n = map->n ? map->n : 1;
	cfg->secrets = calloc(n, sizeof *cfg->secrets);
	cfg->secret_names = calloc(n, sizeof *cfg->secret_names);
	cfg->secret_values = calloc(n, sizeof *cfg->secret_values);
	cfg->secret_lens = calloc(n, sizeof *cfg->secret_lens);
	if (!cfg->secrets || !cfg->secret_names || !cfg->secret_values ||
	    !cfg->secret_lens) {
		ld->oom = 1;
		config_err(ld, map, "out of memory");
		return;
	}
	for (size_t i = 0; i < map->n; i++) {
		const struct cy_node *k = map->keys[i];
		if (!config_name_ok(ld, k, "secret"))
			continue;
		struct config_secret *s = &cfg->secrets[cfg->nsecrets];
		if (!(s->name = config_strdup(ld, k->text)))
			continue;
		int before = ld->nerrors;
		secret_load(ld, s, map->vals[i]);
		if (ld->nerrors != before)
			ld->bad_secrets++;
		if (!s->value) { /* unresolved: still defined, see DESIGN */
			s->value = config_strdup(ld, "");
			s->len = 0;
		}
		cfg->secret_names[cfg->nsecrets] = s->name;
		cfg->secret_values[cfg->nsecrets] = s->value ? s->value : "";
		cfg->secret_lens[cfg->nsecrets] = s->value ? s->len : 0;
		cfg->nsecrets++;
	}
}

void config_secrets_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		struct config_secret *s = &cfg->secrets[i];
		if (s->value)
			explicit_bzero(s->value, s->len);
		free(s->value);
		free(s->name);
		free(s->source);
	}
	free(cfg->secrets);
	free(cfg->secret_names);
	free(cfg->secret_values);
	free(cfg->secret_lens);
}
