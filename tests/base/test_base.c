#include "base/buf.h"
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    char dir[] = "/tmp/lmc_base_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *p = lmc_path_join(dir, "a.json");
    char *text = NULL;
    size_t len = 0;

    CHECK_ERR(lmc_read_file(p, "a.json", 100, &text, &len), LMC_ERR_NOT_FOUND, "a.json: cannot open");
    CHECK_EQ_INT(lmc_write_file_atomic(p, "{\"k\": [1, 2]}  \n", 16), LMC_OK);
    CHECK_EQ_INT(lmc_read_file(p, "a.json", 100, &text, &len), LMC_OK);
    CHECK_EQ_INT(len, 16);
    free(text);
    CHECK_ERR(lmc_read_file(p, "a.json", 8, &text, &len), LMC_ERR_LIMIT, "over the 8-byte limit");

    json_object *o = NULL;
    CHECK_EQ_INT(lmc_json_load_file(p, "a.json", 100, &o, NULL), LMC_OK);
    CHECK(json_object_array_length(lmc_json_get(o, "k")) == 2);
    int64_t iv;
    bool bad = false;
    CHECK(!lmc_json_int(o, "k", &iv, &bad) && bad);
    json_object_put(o);
    CHECK_ERR(lmc_json_parse("{\"a\": 1} x", 10, "cfg", &o), LMC_ERR_FORMAT, "cfg: invalid JSON at byte 9");
    CHECK_ERR(lmc_json_parse("{\"a\": ", 6, "cfg", &o), LMC_ERR_FORMAT, "unexpected end");
    /* top-level scalars end with the document */
    CHECK(lmc_json_parse("12", 2, "v", &o) == LMC_OK && json_object_get_int(o) == 12);
    json_object_put(o);
    CHECK(lmc_json_parse("true", 4, "v", &o) == LMC_OK && json_object_get_boolean(o));
    json_object_put(o);
    CHECK(lmc_json_parse("-0.5 ", 5, "v", &o) == LMC_OK && json_object_get_double(o) == -0.5);
    json_object_put(o);
    CHECK_ERR(lmc_json_parse("tru", 3, "v", &o), LMC_ERR_FORMAT, "v: invalid JSON");
    CHECK_ERR(lmc_json_parse("12 3", 4, "v", &o), LMC_ERR_FORMAT, "trailing data");

    /* A FIFO must be refused at once, not block the reader. */
    char *fifo = lmc_path_join(dir, "fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_ERR(lmc_read_file(fifo, "config.json", 100, &text, &len), LMC_ERR_IO, "not a regular file");
    lmc_mapping m;
    CHECK_ERR(lmc_map_file(dir, "weights", &m), LMC_ERR_IO, "not a regular file");
    unlink(fifo);

    lmc_buf b = {0};
    CHECK(lmc_buf_printf(&b, "%d-%s", 42, "x") && lmc_buf_puts(&b, "yz"));
    char *s = lmc_buf_take(&b);
    CHECK_STREQ(s, "42-xyz");
    free(s);

    unlink(p);
    free(p);
    free(fifo);
    rmdir(dir);
    return check_summary("test_base");
}
