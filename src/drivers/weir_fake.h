/* weir_fake.h — a fault-injecting fake driver for tests and benchmarks.
 *
 * It makes no I/O. Knobs can be changed at any time from any thread; counters
 * are exact. Not installed: it exists to test the engine.
 */
#ifndef WEIR_FAKE_H
#define WEIR_FAKE_H

#include "weir/weir.h"

typedef struct weir_fake weir_fake;
/** A fake connection (what weir_conn_handle() returns for this driver). */
typedef struct weir_fake_conn {
    weir_fake *fake;
    uint64_t serial; /**< 1, 2, 3... in connect order */
    int in_use;      /**< atomic flag the tests use to catch double hand-outs */
    bool dirty;      /**< is_dirty() answers this */
    bool broken;     /**< validate() fails while set */
} weir_fake_conn;

typedef struct weir_fake_counts {
    int64_t connects;         /**< attempts */
    int64_t connect_failures; /**< failed attempts */
    int64_t open;             /**< currently open */
    int64_t max_open;         /**< the most open at once */
    int64_t validates, validate_failures, resets, closes;
    int64_t max_connecting; /**< the most connects in progress at once */
} weir_fake_counts;

/** A new fake target. Free with weir_fake_free() after the pools using it are destroyed. */
weir_fake *weir_fake_new(void);
void weir_fake_free(weir_fake *f);
/** The driver; pass the weir_fake* as ctx to weir_pool_create(). */
const weir_driver *weir_fake_driver(void);

/** Every connect takes this long (bounded by its deadline, then ETIMEDOUT). */
void weir_fake_set_connect_delay_ms(weir_fake *f, int64_t ms);
/** Fail the n-th connect attempt (1-based, counted from now on); 0 = off. */
void weir_fake_fail_nth_connect(weir_fake *f, int64_t n);
/** While down, every connect fails at once with "connection refused". */
void weir_fake_set_down(weir_fake *f, bool down);
/** Every validate takes this long. */
void weir_fake_set_validate_delay_ms(weir_fake *f, int64_t ms);
/** Every close takes this long (a server slow to see its connection go). */
void weir_fake_set_close_delay_ms(weir_fake *f, int64_t ms);
/** reset() fails while set. */
void weir_fake_set_reset_fails(weir_fake *f, bool fails);
/** Mark every open connection broken (validate fails), as after a server restart. */
void weir_fake_break_all(weir_fake *f);
/** The error message connects give while down (default "connection refused").
 *  Stored up to 255 bytes. */
void weir_fake_set_error(weir_fake *f, const char *msg);
void weir_fake_counts_get(weir_fake *f, weir_fake_counts *out);

#endif
