/* test_options.c — the error table, the option table and credential masking. */
#include "helpers.h"

static void errors_have_names_and_messages(void **state)
{
    (void)state;
    assert_string_equal(weir_err_name(0), "WEIR_OK");
    assert_string_equal(weir_strerror(0), "success");
#define XX(name, num, msg)                                                                         \
    assert_int_equal(WEIR_##name, -(num));                                                         \
    assert_string_equal(weir_err_name(-(num)), "WEIR_" #name);                                     \
    assert_string_equal(weir_strerror(-(num)), msg);
    WEIR_ERRNO_MAP(XX)
#undef XX
    assert_string_equal(weir_err_name(-9999), "WEIR_UNKNOWN");
    assert_string_equal(weir_strerror(-9999), "unknown error");
    assert_string_equal(weir_strerror(WEIR_EBUSY),
                        "too many callers waiting; checkout refused (load shedding)");
    assert_string_equal(weir_version(), WEIR_VERSION);
}

static void option_table_defaults(void **state)
{
    (void)state;
    weir_options o;
    weir_options_init(&o);
    assert_int_equal(o.max_size, 10);
    assert_int_equal(o.min_idle, 0);
    assert_int_equal(o.acquire_timeout_ms, 30000);
    assert_int_equal(o.connect_timeout_ms, 10000);
    assert_int_equal(o.idle_timeout_ms, 600000);
    assert_int_equal(o.max_lifetime_ms, 1800000);
    assert_int_equal(o.keepalive_ms, 0);
    assert_int_equal(o.validate_idle_after_ms, 500);
    assert_int_equal(o.max_uses, 0);
    assert_int_equal(o.max_waiters, 0);
    assert_int_equal(o.leak_threshold_ms, 0);
    assert_int_equal(o.backoff_min_ms, 10);
    assert_int_equal(o.backoff_max_ms, 5000);
    assert_true(o.fail_fast);
    assert_int_equal(o.creator_threads, 1);
    char why[128];
    assert_int_equal(weir_options_check(&o, why, sizeof why), 0);

    /* every entry has a name, a doc, a default that parses, and round-trips */
    assert_true(weir_option_count() >= 16);
    for (size_t i = 0; i < weir_option_count(); i++) {
        const weir_option_info *in = weir_option_at(i);
        assert_non_null(in);
        assert_true(strlen(in->name) > 0);
        assert_true(strlen(in->doc) > 10);
        assert_ptr_equal(weir_option_find(in->name), in);
        weir_options t;
        weir_options_init(&t);
        assert_int_equal(weir_options_set(&t, in->name, in->default_text), 0);
        char buf[160];
        assert_int_equal(weir_options_get(&t, in->name, buf, sizeof buf), 0);
        weir_options u;
        weir_options_init(&u);
        assert_int_equal(weir_options_set(&u, in->name, buf), 0);
        assert_memory_equal(&t, &u, sizeof t);
    }
    assert_null(weir_option_at(weir_option_count()));
    assert_null(weir_option_find("no_such_option"));
}

static void option_setters(void **state)
{
    (void)state;
    weir_options o;
    weir_options_init(&o);
    assert_int_equal(weir_options_set(&o, "max_size", "50"), 0);
    assert_int_equal(o.max_size, 50);
    assert_int_equal(weir_options_set(&o, "acquire_timeout", "1.5s"), 0);
    assert_int_equal(o.acquire_timeout_ms, 1500);
    assert_int_equal(weir_options_set(&o, "idle_timeout", "10min"), 0);
    assert_int_equal(o.idle_timeout_ms, 600000);
    assert_int_equal(weir_options_set(&o, "max_lifetime", "1h"), 0);
    assert_int_equal(o.max_lifetime_ms, 3600000);
    assert_int_equal(weir_options_set(&o, "keepalive", "250ms"), 0);
    assert_int_equal(o.keepalive_ms, 250);
    /* a bare number is ambiguous (seconds in pgbouncer.ini, ms elsewhere):
     * refused, but for 0 (off) and -1 (never), the same in any unit */
    assert_int_equal(weir_options_set(&o, "keepalive", "250"), WEIR_EINVAL);
    assert_int_equal(o.keepalive_ms, 250);
    assert_int_equal(weir_options_set(&o, "leak_threshold", "0"), 0);
    assert_int_equal(weir_options_set(&o, "validate_idle_after", "-1"), 0);
    assert_int_equal(o.validate_idle_after_ms, -1);
    assert_int_equal(weir_options_set(&o, "fail_fast", "off"), 0);
    assert_false(o.fail_fast);
    assert_int_equal(weir_options_set(&o, "name", "orders-db"), 0);
    assert_string_equal(o.name, "orders-db");

    weir_options before = o;
    assert_int_equal(weir_options_set(&o, "max_size", "0"), WEIR_ERANGE);
    assert_int_equal(weir_options_set(&o, "max_size", "ten"), WEIR_EINVAL);
    assert_int_equal(weir_options_set(&o, "max_size", "10 apples"), WEIR_EINVAL);
    assert_int_equal(weir_options_set(&o, "acquire_timeout", "3 fortnights"), WEIR_EINVAL);
    assert_int_equal(weir_options_set(&o, "fail_fast", "maybe"), WEIR_EINVAL);
    assert_int_equal(weir_options_set(&o, "nope", "1"), WEIR_ENOENT);
    assert_memory_equal(&before, &o, sizeof o); /* nothing changed on error */

    assert_int_equal(weir_options_set_int(&o, "max_size", 7), 0);
    assert_int_equal(o.max_size, 7);
    assert_int_equal(weir_options_set_int(&o, "acquire_timeout", 7), WEIR_ETYPE);
    assert_int_equal(weir_options_set_ms(&o, "acquire_timeout", 700), 0);
    assert_int_equal(o.acquire_timeout_ms, 700);
    assert_int_equal(weir_options_set_ms(&o, "acquire_timeout", -5), WEIR_ERANGE);
    assert_int_equal(weir_options_set_bool(&o, "fail_fast", true), 0);
    assert_true(o.fail_fast);
    assert_int_equal(weir_options_set_bool(&o, "max_size", true), WEIR_ETYPE);
    assert_int_equal(weir_options_set_string(&o, "name", "x"), 0);
    assert_int_equal(weir_options_set_string(&o, "max_size", "x"), WEIR_ETYPE);
    assert_int_equal(weir_options_set_int(&o, "nope", 1), WEIR_ENOENT);

    char why[128];
    o.min_idle = 8;
    assert_int_equal(weir_options_check(&o, why, sizeof why), WEIR_EINVAL);
    assert_string_equal(why, "min_idle must not exceed max_size");
    o.min_idle = 0;
    o.backoff_min_ms = 10000;
    assert_int_equal(weir_options_check(&o, why, sizeof why), WEIR_EINVAL);
    assert_string_equal(why, "backoff_min must not exceed backoff_max");

    /* a pool refuses bad options */
    weir_fake *fk = weir_fake_new();
    weir_pool *p = NULL;
    log_capture lc = {.mu = PTHREAD_MUTEX_INITIALIZER};
    weir_hooks hooks = {.ud = &lc, .on_log = capture_log};
    assert_int_equal(weir_pool_create(&p, weir_fake_driver(), fk, &o, &hooks), WEIR_EINVAL);
    assert_null(p);
    /* and says why */
    assert_string_equal(lc.last, "invalid pool options: backoff_min must not exceed backoff_max");
    weir_fake_free(fk);
}

static void presets_set_what_they_name(void **state)
{
    (void)state;
    weir_options o;
    weir_options_init(&o);
    snprintf(o.name, sizeof o.name, "mine");
    o.leak_threshold_ms = 1234; /* not named by any preset: kept */
    assert_int_equal(weir_options_preset(&o, "serverless"), 0);
    assert_int_equal(o.max_size, 5);
    assert_int_equal(o.min_idle, 0);
    assert_int_equal(o.idle_timeout_ms, 10000);
    assert_int_equal(o.validate_idle_after_ms, 0);
    assert_int_equal(o.connect_timeout_ms, 3000);
    assert_int_equal(o.leak_threshold_ms, 1234);
    assert_string_equal(o.name, "mine");
    assert_int_equal(weir_options_check(&o, NULL, 0), 0);
    /* by name through the generic setter, as a config file does */
    assert_int_equal(weir_options_set(&o, "preset", "high_throughput"), 0);
    assert_int_equal(o.max_size, 50);
    assert_int_equal(o.min_idle, 10);
    assert_int_equal(o.creator_threads, 4);
    assert_int_equal(o.warmup_batch, 5);
    assert_int_equal(weir_options_check(&o, NULL, 0), 0);
    assert_int_equal(weir_options_preset(&o, "low_memory"), 0);
    assert_int_equal(o.max_size, 4);
    assert_int_equal(o.min_idle, 0);
    assert_int_equal(weir_options_check(&o, NULL, 0), 0);
    assert_int_equal(weir_options_preset(&o, "default"), 0);
    weir_options d;
    weir_options_init(&d);
    snprintf(d.name, sizeof d.name, "mine");
    assert_memory_equal(&o, &d, sizeof o);
    /* an unknown name changes nothing */
    assert_int_equal(weir_options_preset(&o, "turbo"), WEIR_ENOENT);
    assert_int_equal(weir_options_set(&o, "preset", "turbo"), WEIR_EINVAL);
    assert_memory_equal(&o, &d, sizeof o);
    /* every listed preset applies and passes the check */
    assert_int_equal(weir_preset_count(), 4);
    for (size_t i = 0; i < weir_preset_count(); i++) {
        weir_options_init(&o);
        assert_int_equal(weir_options_preset(&o, weir_preset_at(i)), 0);
        assert_int_equal(weir_options_check(&o, NULL, 0), 0);
    }
    assert_null(weir_preset_at(weir_preset_count()));
}

static void masking(void **state)
{
    (void)state;
    char out[256];
    struct {
        const char *in, *want;
    } cases[] = {
        {"postgres://app:s3cret@db:5432/x", "postgres://app:***@db:5432/x"},
        {"postgresql://app@db/x", "postgresql://app@db/x"},
        {"postgres://a:b:c@d@host/x?sslmode=require", "postgres://a:***@host/x?sslmode=require"},
        {"host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"},
        {"host=db password = 'it\\'s secret' port=5", "host=db password = *** port=5"},
        {"user=a PASSWORD=x", "user=a PASSWORD=***"},
        {"mypassword=x", "mypassword=x"},
        {"sqlite:///var/db/demo.db", "sqlite:///var/db/demo.db"},
        {"http://u:p@h/?token=abc&x=1", "http://u:***@h/?token=***&x=1"},
        {"FATAL: password authentication failed for user \"app\"",
         "FATAL: password authentication failed for user \"app\""},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = weir_mask_credentials(cases[i].in, out, sizeof out);
        assert_string_equal(out, cases[i].want);
        assert_int_equal(n, strlen(cases[i].want));
    }
    /* truncation stays terminated */
    char small[8];
    weir_mask_credentials("postgres://app:s3cret@db/x", small, sizeof small);
    assert_int_equal(strlen(small), 7);
    assert_null(strstr(small, "s3cret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(errors_have_names_and_messages),
        cmocka_unit_test(option_table_defaults),
        cmocka_unit_test(option_setters),
        cmocka_unit_test(masking),
        cmocka_unit_test(presets_set_what_they_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
