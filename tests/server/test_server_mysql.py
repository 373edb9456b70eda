"""SQL over HTTP on MySQL: a [databases] entry mysql://... served by weir's HTTP
door through libweir's MySQL driver, against a real MariaDB server that the
harness starts (tests/integration/mysql_cluster.sh), with Python's http.client.
"""
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import basic, HERE, Weir, free_port, wait_port

MY_CLUSTER = os.path.join(HERE, "..", "integration", "mysql_cluster.sh")
MY = None


class MariaDB:
    """One throwaway MariaDB server for this module."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="weir-my-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        subprocess.run(["sh", MY_CLUSTER, "start", self.dir, str(self.port)], check=True)

    def sql(self, q):
        r = subprocess.run(["sh", MY_CLUSTER, "sql", self.dir, q], capture_output=True, text=True,
                           check=True)
        return r.stdout.strip()

    def url(self, password="s3cret", query=""):
        return "mysql://app:%s@127.0.0.1:%d/appdb%s" % (password, self.port, query)

    def destroy(self):
        subprocess.run(["sh", MY_CLUSTER, "destroy", self.dir], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def setUpModule():
    global MY
    if not os.path.exists("/usr/sbin/mariadbd"):
        raise unittest.SkipTest("no MariaDB server (apt-get install mariadb-server)")
    MY = MariaDB()


def tearDownModule():
    if MY:
        MY.destroy()


class Client:
    def __init__(self, port, user="app", password="s3cret"):
        self.auth = basic(user, password)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None):
        h = {"Authorization": self.auth, "Content-Type": "application/json"}
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=h)
        r = self.conn.getresponse()
        text = r.read().decode()
        if r.getheader("Connection") == "close":
            self.conn.close()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text

    def sql(self, db, query, params=None, **kw):
        body = dict(query=query, **kw)
        if params is not None:
            body["params"] = params
        return self.call("POST", "/v1/databases/%s/sql" % db, body)


class MySQLOverHttp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.http_port = free_port()
        cls.w = Weir(None, settings={"http_listen_port": str(cls.http_port), "http_workers": "4",
                                     "http_max_rows": "1000", "http_statement_timeout": "800ms",
                                     "admin_users": "weir"},
                     databases={"shop": MY.url() + " pool_size=3",
                                "badpw": MY.url(password="wrong")})
        if not wait_port(cls.http_port):
            raise RuntimeError("no HTTP door:\n" + cls.w.log())
        cls.c = Client(cls.http_port)

    @classmethod
    def tearDownClass(cls):
        cls.c.conn.close()
        cls.w.stop()

    def test_values_keep_their_types(self):
        st, r = self.c.sql("shop", "SELECT 1 AS one, CAST(9007199254740993 AS SIGNED) AS big, "
                                   "1.50 AS price, 2.5e0 AS dbl, 'héllo' AS txt, NULL AS nothing, "
                                   "DATE '2024-02-29' AS day, X'00ff' AS bin")
        self.assertEqual(st, 200, r)
        self.assertEqual(r["command"], "SELECT")
        self.assertEqual(r["rowCount"], 1)
        row = r["rows"][0]
        self.assertEqual(row, {"one": 1, "big": "9007199254740993", "price": "1.50", "dbl": 2.5,
                               "txt": "héllo", "nothing": None, "day": "2024-02-29",
                               "bin": "\\x00ff"})
        types = {f["name"]: f["type"] for f in r["fields"]}
        self.assertEqual(types["one"], "INT")
        self.assertEqual(types["big"], "BIGINT")
        self.assertEqual(types["price"], "DECIMAL")
        self.assertEqual(types["bin"], "VARBINARY")
        # BIT columns are numbers, in the text and the binary protocol alike
        self.c.sql("shop", "CREATE TABLE IF NOT EXISTS flags (b BIT(3))")
        self.c.sql("shop", "DELETE FROM flags")
        self.c.sql("shop", "INSERT INTO flags VALUES (b'101')")
        for params in (None, [0]):
            q = "SELECT b FROM flags" + (" WHERE b > ?" if params else "")
            st, r = self.c.sql("shop", q, params)
            self.assertEqual((st, r["rows"], r["fields"][0]["type"]), (200, [{"b": 5}], "BIT"), r)
        # the options PostgreSQL requests have: numbers for int8/numeric, arrays, raw text
        st, r = self.c.sql("shop", "SELECT CAST(7 AS SIGNED) AS big, 1.50 AS price, 3 AS n",
                           arrayMode=True, int8AsNumber=True, numericAsNumber=True)
        self.assertEqual(st, 200, r)
        self.assertEqual(r["rows"], [[7, 1.5, 3]])

    def test_parameters_are_bound_not_spliced(self):
        # an integer parameter is a BIGINT: its sum comes back as int8 does, a string
        st, r = self.c.sql("shop", "SELECT ? + 1 AS n, ? AS s, ? AS z, ? AS j",
                           [41, "x'); DROP TABLE t; --", None, {"a": [1, 2]}])
        self.assertEqual(st, 200, r)
        self.assertEqual(r["rows"], [{"n": "42", "s": "x'); DROP TABLE t; --", "z": None,
                                      "j": '{"a":[1,2]}'}])
        st, r = self.c.sql("shop", "SELECT ? AS a", [1, 2])
        self.assertEqual(st, 400)
        self.assertIn("supplies 2 parameters, but prepared statement requires 1", r["message"])

    def test_dml_counts_rows_and_errors_carry_mysqls_codes(self):
        st, r = self.c.sql("shop", "CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, "
                                   "name VARCHAR(40) NOT NULL) ENGINE=InnoDB")
        self.assertEqual(st, 200, r)
        self.c.sql("shop", "DELETE FROM items")
        st, r = self.c.sql("shop", "INSERT INTO items VALUES (1,'a'),(2,'b'),(3,'c')")
        self.assertEqual((st, r["command"], r["rowCount"]), (200, "INSERT", 3), r)
        st, r = self.c.sql("shop", "UPDATE items SET name = ? WHERE id > ?", ["z", 1])
        self.assertEqual((st, r["command"], r["rowCount"]), (200, "UPDATE", 2), r)
        st, r = self.c.sql("shop", "INSERT INTO items VALUES (1, 'dup')")
        self.assertEqual(st, 400, r)
        self.assertEqual((r["code"], r["errno"]), ("23000", 1062))
        self.assertIn("Duplicate entry '1' for key 'PRIMARY'", r["message"])
        st, r = self.c.sql("shop", "SELECT * FROM no_such_table")
        self.assertEqual((st, r["code"], r["errno"]), (400, "42S02", 1146), r)
        st, r = self.c.sql("shop", "SELEC 1")
        self.assertEqual((st, r["code"], r["errno"]), (400, "42000", 1064), r)
        # two statements in one request: refused by the server, never run
        st, r = self.c.sql("shop", "SELECT 1; DELETE FROM items")
        self.assertEqual(st, 400, r)
        st, r = self.c.sql("shop", "SELECT count(*) AS n FROM items")
        self.assertEqual(r["rows"], [{"n": "3"}])

    def test_a_batch_is_one_transaction(self):
        self.c.sql("shop", "CREATE TABLE IF NOT EXISTS ledger (x INT) ENGINE=InnoDB")
        self.c.sql("shop", "DELETE FROM ledger")
        st, r = self.c.call("POST", "/v1/databases/shop/sql", {"queries": [
            {"query": "INSERT INTO ledger VALUES (1)"},
            {"query": "INSERT INTO ledger VALUES (?)", "params": [2]},
            {"query": "SELECT * FROM nope"}]})
        self.assertEqual(st, 400, r)
        st, r = self.c.sql("shop", "SELECT count(*) AS n FROM ledger")
        self.assertEqual(r["rows"], [{"n": "0"}])  # rolled back as a whole
        st, r = self.c.call("POST", "/v1/databases/shop/sql", {
            "isolationLevel": "Serializable", "queries": [
                {"query": "INSERT INTO ledger VALUES (1)"},
                {"query": "SELECT @@in_transaction AS t"}]})
        self.assertEqual(st, 200, r)
        self.assertEqual(r["results"][1]["rows"], [{"t": "1"}])
        st, r = self.c.sql("shop", "SELECT count(*) AS n FROM ledger")
        self.assertEqual(r["rows"], [{"n": "1"}])

    def test_session_state_does_not_reach_the_next_request(self):
        for _ in range(6):  # every connection of the pool (3) is reused
            st, r = self.c.sql("shop", "SET @who = 'alice'")
            self.assertEqual(st, 200, r)
            st, r = self.c.sql("shop", "SELECT @who AS who")
            self.assertEqual(r["rows"], [{"who": None}], r)

    def test_statement_timeout_and_row_limit(self):
        st, r = self.c.sql("shop", "SELECT SLEEP(3) AS s")
        self.assertEqual(st, 400, r)
        self.assertEqual(r["code"], "70100", r)
        self.assertIn("statement timeout (800 ms)", r["message"])
        st, r = self.c.sql("shop", "SELECT seq FROM seq_1_to_100000")
        self.assertEqual((st, r["code"]), (400, "54000"), r)
        self.assertIn("more than 1000 rows", r["message"])
        st, r = self.c.sql("shop", "SELECT seq FROM seq_1_to_100000 WHERE seq > ?", [5])
        self.assertEqual((st, r["code"]), (400, "54000"), r)
        # the pool is whole after both: the next requests are answered at once
        for _ in range(4):
            st, r = self.c.sql("shop", "SELECT 2 AS two")
            self.assertEqual((st, r["rows"]), (200, [{"two": 2}]), r)

    def test_a_wrong_password_is_reported_not_hidden(self):
        st, r = self.c.sql("badpw", "SELECT 1")
        self.assertEqual(st, 503, r)
        self.assertIn("Access denied for user 'app'", r["message"])
        self.assertNotIn("wrong", r["message"])
        st, r = self.c.call("GET", "/ready")
        self.assertEqual(st, 503, r)
        self.assertEqual(r["databases"]["shop"], "ok")
        self.assertIn("ERROR 1045 (28000)", r["databases"]["badpw"])

    def test_pools_console_and_the_postgresql_door(self):
        self.c.sql("shop", "SELECT 1")
        admin = Client(self.http_port, "weir", "weirpass")
        st, r = admin.call("GET", "/v1/pools")
        admin.conn.close()
        self.assertEqual(st, 200, r)
        mine = [p for p in r["pools"] if p["database"] == "shop"]
        self.assertEqual(len(mine), 1, r)
        self.assertEqual((mine[0]["kind"], mine[0]["size"]), ("mysql", 3))
        rows, res = self.w.admin("SHOW DATABASES")
        line = [x for x in rows if x[0] == "shop"]
        self.assertTrue(line and "mysql://app:***@127.0.0.1" in line[0][1], rows)
        self.assertNotIn("s3cret", res.stdout)
        r = self.w.psql("SELECT 1", dbname="shop")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('database "shop" is a MySQL database: weir serves it over HTTP only',
                      r.stderr)


class BadMySQLConfig(unittest.TestCase):
    def test_a_bad_url_is_a_clear_error_at_start(self):
        w = Weir(None, settings={"http_listen_port": str(free_port())}, start=False,
                 databases={"shop": MY.url(query="?ssl_mode=sometimes")})
        try:
            w.start()
            ok = wait_port(w.port)
            # the MySQL pools are made once the listeners are up: give the
            # line a moment on a busy machine
            deadline = time.monotonic() + 10
            log = w.log()
            while "invalid MySQL URL" not in log and time.monotonic() < deadline:
                time.sleep(0.05)
                log = w.log()
        finally:
            w.stop()
        self.assertTrue(ok)
        self.assertIn('database shop: invalid MySQL URL "mysql://app:***@127.0.0.1', log)
        self.assertIn('ssl_mode "sometimes" is not disabled, preferred, required', log)
        self.assertNotIn("s3cret", log)

    def test_options_for_postgresql_are_refused_on_a_mysql_entry(self):
        w = Weir(None, start=False, databases={"shop": MY.url() + " pool_mode=session"})
        try:
            rc, log = w.start_fails()
        finally:
            w.stop()
        self.assertNotEqual(rc, 0)
        self.assertIn('"pool_mode" does not apply to a MySQL database', log)


if __name__ == "__main__":
    unittest.main()
