/* hba.h — auth_hba_file and auth_ident_file: who may log in how, in
 * pg_hba.conf's and pg_ident.conf's syntax, as PostgreSQL and PgBouncer read
 * them.
 *
 * Pure code: text in, rules out, and a lookup per login; it opens files only
 * for hba_load and for "@file" lists (relative to the hba file's folder).
 * A loaded set is immutable and shared by reference count, so a
 * configuration and its copies (RELOAD, SET) hold the same one.
 *
 * The first rule whose connection type, database, user and address match a
 * login decides its method; no match refuses the login. Everything the
 * syntax allows but weir cannot honour is an error at load (a rule skipped
 * could let someone in), except methods weir does not have (ldap, pam, gss,
 * ...): those rules load, and the logins they match are refused.
 */
#ifndef WEIR_SERVER_HBA_H
#define WEIR_SERVER_HBA_H

#include <stdbool.h>
#include <stddef.h>

enum hba_method {
    HBA_TRUST,
    HBA_REJECT,
    HBA_MD5, /* md5, or SCRAM for a user whose secret is SCRAM (as PostgreSQL) */
    HBA_PASSWORD,
    HBA_SCRAM,
    HBA_CERT,
    HBA_PEER,
    HBA_UNSUPPORTED /* ldap, pam, gss, ...: refused */
};

/* What a login offers for matching. */
typedef struct hba_login {
    bool local;             /* over the Unix socket */
    bool tls;               /* over TLS */
    bool replication;       /* a replication connection */
    int family;             /* AF_INET or AF_INET6 when not local */
    unsigned char addr[16]; /* 4 or 16 bytes, network order */
    const char *db, *user;
} hba_login;

/* The rule that matched. */
typedef struct hba_rule_info {
    int line;   /* in its file, from 1 */
    int method; /* enum hba_method */
    const char *method_name;
    const char *map; /* map= option, or "" */
    int clientcert;  /* clientcert= option: 0 none, 1 verify-ca, 2 verify-full */
} hba_rule_info;

typedef struct hba hba;

/* Read the hba file (and the ident file when ident_path is not empty).
 * NULL with err ("file:line: why") on any error; warn (may be NULL) gets one
 * line per rule whose method weir refuses. */
hba *hba_load(const char *hba_path, const char *ident_path, void (*warn)(void *ud, const char *msg),
              void *ud, char *err, size_t errlen);
/* The same from text; name is used in messages, dir is where "@file" lists
 * are read from (NULL: "@file" is an error). */
hba *hba_parse(const char *text, size_t len, const char *name, const char *dir,
               void (*warn)(void *ud, const char *msg), void *ud, char *err, size_t errlen);
/* Add pg_ident.conf text to h. 0, or -1 with err. */
int hba_parse_ident(hba *h, const char *text, size_t len, const char *name, char *err,
                    size_t errlen);
void hba_ref(hba *h);
void hba_unref(hba *h); /* NULL is fine */
size_t hba_rule_count(const hba *h);

/* The first rule matching q: true and *out filled, or false (no rule). */
bool hba_match(const hba *h, const hba_login *q, hba_rule_info *out);
/* Does ident map `map` let system user sys log in as user? */
bool hba_ident_match(const hba *h, const char *map, const char *sys, const char *user);

#endif
