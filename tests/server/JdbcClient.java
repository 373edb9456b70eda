// JdbcClient.java — pgjdbc (Debian's libpostgresql-jdbc-java) through weir, run by
// test_server.py: what the driver sends at login (extra_float_digits, and
// search_path from currentSchema), its named server-side statements (after
// prepareThreshold uses, or at once with prepareThreshold=1), binary
// transfer, batches, a cursor read a few rows at a time (a portal suspended
// and resumed), and a failed statement rolled back, from several threads, each
// with a connection of its own as a connection pool would hold them; before
// that, setQueryTimeout (pgjdbc's own CancelRequest) and COPY both ways
// through its CopyManager.
//
//   java -cp postgresql.jar:DIR JdbcClient PORT THREADS ITERATIONS [URL_PARAMS]
// (URL_PARAMS: more of the JDBC URL's parameters, sslmode=... for instance)
import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcClient {
    static String run(String url, Properties p, int tid, int iters) throws SQLException {
        try (Connection c = DriverManager.getConnection(url, p)) {
            try (Statement s = c.createStatement();
                 ResultSet r = s.executeQuery("show extra_float_digits")) {
                r.next();
                if (!r.getString(1).equals("3")) return "extra_float_digits " + r.getString(1);
            }
            for (int i = 0; i < iters; i++) {
                try (PreparedStatement ps = c.prepareStatement(
                         "select ?::int + 1, ?::text, ?::bytea, ?::numeric * 2, current_schema()")) {
                    ps.setInt(1, i);
                    ps.setString(2, "t" + tid);
                    ps.setBytes(3, new byte[] {1, 2, (byte) i});
                    ps.setBigDecimal(4, new BigDecimal("1234.5678"));
                    try (ResultSet r = ps.executeQuery()) {
                        r.next();
                        if (r.getInt(1) != i + 1 || !r.getString(2).equals("t" + tid) ||
                            r.getBytes(3)[2] != (byte) i ||
                            r.getBigDecimal(4).compareTo(new BigDecimal("2469.1356")) != 0 ||
                            !r.getString(5).equals("jdbc_s"))
                            return "thread " + tid + ": wrong row at " + i;
                    }
                }
                if (i % 10 != 0) continue;
                c.setAutoCommit(false);
                int base = tid * 1000000 + i * 10;
                try (PreparedStatement ins = c.prepareStatement("insert into jt values (?, ?)")) {
                    for (int k = 0; k < 5; k++) {
                        ins.setInt(1, base + k);
                        ins.setString(2, "v" + k);
                        ins.addBatch();
                    }
                    ins.executeBatch();
                }
                try (PreparedStatement q = c.prepareStatement(
                         "select id from jt where id >= ? and id < ? order by id")) {
                    q.setFetchSize(2); // three fetches: 2, 2, 1
                    q.setInt(1, base);
                    q.setInt(2, base + 5);
                    int n = 0;
                    try (ResultSet r = q.executeQuery()) {
                        while (r.next())
                            if (r.getInt(1) != base + n++) return "cursor out of order";
                    }
                    if (n != 5) return "cursor saw " + n + " rows";
                }
                c.commit();
                try (Statement s = c.createStatement()) {
                    s.execute("insert into jt values (" + base + ", 'dup')");
                    return "a duplicate key was taken";
                } catch (SQLException e) {
                    if (!"23505".equals(e.getSQLState())) return "error " + e.getSQLState();
                    c.rollback();
                }
                c.setAutoCommit(true);
            }
            return "ok";
        }
    }

    public static void main(String[] a) throws Exception {
        String base = "jdbc:postgresql://127.0.0.1:" + a[0] + "/appdb?currentSchema=jdbc_s" +
                      (a.length > 3 && !a[3].isEmpty() ? "&" + a[3] : "");
        int threads = Integer.parseInt(a[1]), iters = Integer.parseInt(a[2]);
        Properties p = new Properties();
        p.setProperty("user", "app");
        p.setProperty("password", "s3cret");
        try (Connection c = DriverManager.getConnection(base, p); Statement s = c.createStatement()) {
            s.execute("drop table if exists jt; create table jt (id int primary key, v text)");
            s.setQueryTimeout(1);
            try {
                s.execute("select pg_sleep(30)");
                System.out.println("setQueryTimeout: not cancelled");
                System.exit(1);
            } catch (SQLException e) {
                if (!"57014".equals(e.getSQLState())) throw e; // canceling statement
            }
            s.setQueryTimeout(0);
            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < 50000; i++) sb.append(1000000000 + i).append("\tcopied\n");
            long in = cm.copyIn("COPY jt FROM STDIN", new StringReader(sb.toString()));
            StringWriter out = new StringWriter();
            long back = cm.copyOut("COPY (SELECT * FROM jt ORDER BY id) TO STDOUT", out);
            if (in != 50000 || back != 50000 || !out.toString().equals(sb.toString())) {
                System.out.println("COPY: in " + in + ", out " + back);
                System.exit(1);
            }
            s.execute("delete from jt");
        }
        ExecutorService ex = Executors.newFixedThreadPool(threads);
        List<Future<String>> fs = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int tid = t;
            // assumeMinServerVersion: pgjdbc then sends extra_float_digits=3 at
            // login, which weir keeps on every server connection the client
            // uses. Without it pgjdbc logs in with 2 and runs SET
            // extra_float_digits = 3, and in transaction pooling that SET stays
            // on the one server connection it ran on (docs/SERVER.md).
            String url = base + "&assumeMinServerVersion=12" +
                         (t % 2 == 1 ? "&prepareThreshold=1&binaryTransfer=true" : "");
            fs.add(ex.submit(() -> run(url, p, tid, iters)));
        }
        boolean ok = true;
        for (Future<String> f : fs) {
            String r = f.get();
            if (!r.equals("ok")) {
                System.out.println(r);
                ok = false;
            }
        }
        ex.shutdown();
        try (Connection c = DriverManager.getConnection(base, p); Statement s = c.createStatement();
             ResultSet r = s.executeQuery("select count(*) from jt")) {
            r.next();
            int want = threads * ((iters + 9) / 10) * 5;
            if (r.getInt(1) != want) {
                System.out.println("rows " + r.getInt(1) + ", expected " + want);
                ok = false;
            }
        }
        if (ok) System.out.println("pgjdbc ok");
        System.exit(ok ? 0 : 1);
    }
}
