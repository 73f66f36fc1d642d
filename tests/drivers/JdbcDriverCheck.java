// pgjdbc through pgswitch: simple and prepared queries (prepareThreshold 5 and 1, simple query
// mode), transactions, errors, batches, 100k-row streaming, COPY, concurrency, session settings
// and cancel. Prints a JSON summary on stdout; exits 1 if any check failed.
// Run by tests/integration/test_drivers.py:
//   javac -d OUT JdbcDriverCheck.java && java -cp OUT:/usr/share/java/postgresql.jar \
//     JdbcDriverCheck HOST PORT USER PASSWORD DB MODE
import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class JdbcDriverCheck {
  interface Check {
    void run() throws Exception;
  }

  static String host, port, user, password, db, mode, t;
  static final List<String> results = new ArrayList<>();
  static boolean allOk = true;

  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println("usage: JdbcDriverCheck HOST PORT USER PASSWORD DB MODE");
      System.exit(2);
    }
    host = args[0];
    port = args[1];
    user = args[2];
    password = args[3];
    db = args[4];
    mode = args[5];
    t = "jdbc_" + mode.replaceAll("[^a-z]", "");

    check("simple_queries", JdbcDriverCheck::simpleQueries);
    check("setup_tables", JdbcDriverCheck::setupTables);
    check("prepared_threshold_default", JdbcDriverCheck::preparedDefault);
    check("prepared_threshold_1", JdbcDriverCheck::preparedThreshold1);
    check("simple_query_mode", JdbcDriverCheck::simpleQueryMode);
    check("transactions", JdbcDriverCheck::transactions);
    check("errors_then_connection_works", JdbcDriverCheck::errors);
    check("batch_insert", JdbcDriverCheck::batchInsert);
    check("many_rows", JdbcDriverCheck::manyRows);
    check("large_values", JdbcDriverCheck::largeValues);
    check("copy", JdbcDriverCheck::copy);
    check("metadata", JdbcDriverCheck::metadata);
    check("read_only_transactions", JdbcDriverCheck::readOnly);
    check("two_open_portals", JdbcDriverCheck::twoPortals);
    check("many_statements_lru", JdbcDriverCheck::manyStatements);
    check("result_type_change", JdbcDriverCheck::resultTypeChange);
    check("autosave_always", JdbcDriverCheck::autosave);
    check("isolation_level", JdbcDriverCheck::isolationLevel);
    check("startup_parameters", JdbcDriverCheck::startupTimezone);
    check("more_connections_than_servers", JdbcDriverCheck::moreConnectionsThanServers);
    check("concurrency", JdbcDriverCheck::concurrency);
    check("settings_follow_client", JdbcDriverCheck::settings);
    check("cancel", JdbcDriverCheck::cancel);

    StringBuilder sb = new StringBuilder();
    sb.append("{\"driver\": \"pgjdbc\", \"mode\": ").append(json(mode));
    sb.append(", \"ok\": ").append(allOk).append(", \"checks\": [");
    sb.append(String.join(", ", results)).append("]}");
    System.out.println(sb);
    System.exit(allOk ? 0 : 1);
  }

  // -- harness ----------------------------------------------------------------------------------
  static void check(String name, Check c) {
    // DRIVER_ONLY=name,name: run only those checks (and setup_tables), for debugging.
    String only = System.getenv("DRIVER_ONLY");
    if (only != null && !only.isEmpty() && !name.equals("setup_tables")
        && !Arrays.asList(only.split(",")).contains(name)) {
      return;
    }
    long t0 = System.nanoTime();
    String err = null;
    try {
      c.run();
    } catch (Throwable e) {
      err = e.toString();
      if (e instanceof SQLException) {
        err += " [SQLSTATE " + ((SQLException) e).getSQLState() + "]";
      }
      e.printStackTrace(System.err);
    }
    long ms = (System.nanoTime() - t0) / 1_000_000;
    if (err != null) allOk = false;
    System.err.printf("%-32s %s (%d ms)%s%n", name, err == null ? "ok" : "FAIL", ms,
        err == null ? "" : ": " + err);
    results.add("{\"name\": " + json(name) + ", \"ok\": " + (err == null) + ", \"ms\": " + ms
        + (err == null ? "" : ", \"error\": " + json(err)) + "}");
  }

  static String json(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char ch : s.toCharArray()) {
      if (ch == '"' || ch == '\\') b.append('\\').append(ch);
      else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
      else b.append(ch);
    }
    return b.append('"').toString();
  }

  static void expect(boolean cond, String what) {
    if (!cond) throw new AssertionError(what);
  }

  static void expectEq(Object want, Object got, String what) {
    if (want == null ? got != null : !want.equals(got)) {
      throw new AssertionError(what + ": want " + want + ", got " + got);
    }
  }

  static void expectSqlState(String state, Check c, String what) throws Exception {
    try {
      c.run();
    } catch (SQLException e) {
      expectEq(state, e.getSQLState(), what + " (" + e.getMessage() + ")");
      return;
    }
    throw new AssertionError(what + ": no error, want SQLSTATE " + state);
  }

  static Connection connect(String... kv) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", password);
    p.setProperty("sslmode", "disable");
    p.setProperty("connectTimeout", "20");
    p.setProperty("socketTimeout", "60");
    p.setProperty("ApplicationName", "jdbc_check");
    for (int i = 0; i + 1 < kv.length; i += 2) p.setProperty(kv[i], kv[i + 1]);
    return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + db, p);
  }

  static long one(Connection c, String sql) throws SQLException {
    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
      expect(rs.next(), "no row from " + sql);
      return rs.getLong(1);
    }
  }

  static String str(Connection c, String sql) throws SQLException {
    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
      expect(rs.next(), "no row from " + sql);
      return rs.getString(1);
    }
  }

  // A read of rows that other connections wrote: inside a transaction, which pgswitch runs on
  // the primary in transaction mode (autocommit reads may go to a replica that lags).
  static long countOnPrimary(Connection c, String sql) throws SQLException {
    boolean ac = c.getAutoCommit();
    c.setAutoCommit(false);
    try {
      return one(c, sql);
    } finally {
      c.commit();
      c.setAutoCommit(ac);
    }
  }

  // -- checks -----------------------------------------------------------------------------------
  static void simpleQueries() throws Exception {
    try (Connection c = connect()) {
      expectEq(1L, one(c, "SELECT 1"), "SELECT 1");
      expect(str(c, "SELECT version()").startsWith("PostgreSQL"), "version()");
      try (Statement st = c.createStatement()) {
        expect(st.execute("SELECT 1 AS a; SELECT 'two' AS b; SELECT 3 AS c"), "multi");
        int n = 0;
        do {
          try (ResultSet rs = st.getResultSet()) {
            expect(rs.next(), "row in result " + n);
            n++;
          }
        } while (st.getMoreResults());
        expectEq(3, n, "result sets of a multi-statement query");
      }
      expectEq("jdbc_check", str(c, "SHOW application_name"), "ApplicationName startup param");
      for (int i = 0; i < 3; i++) expect(c.isValid(5), "isValid (an empty query)");
    }
  }

  static void setupTables() throws Exception {
    try (Connection c = connect(); Statement st = c.createStatement()) {
      st.execute("DROP TABLE IF EXISTS " + t + "_items, " + t + "_copy, " + t + "_conc, "
          + t + "_batch, " + t + "_shape");
      st.execute("CREATE TABLE " + t + "_items (id int PRIMARY KEY, val text)");
      st.execute("CREATE TABLE " + t + "_copy (id int, val text)");
      st.execute("CREATE TABLE " + t + "_conc (worker int, n int, app text, PRIMARY KEY (worker, n))");
      st.execute("CREATE TABLE " + t + "_batch (id int PRIMARY KEY, val text)");
    }
  }

  static void preparedDefault() throws Exception {
    try (Connection c = connect();
        PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2, ?::text || '!'")) {
      for (int i = 0; i < 12; i++) {
        ps.setInt(1, i);
        ps.setString(2, "v" + i);
        try (ResultSet rs = ps.executeQuery()) {
          expect(rs.next(), "row");
          expectEq(i * 2, rs.getInt(1), "int result, execution " + i);
          expectEq("v" + i + "!", rs.getString(2), "text result, execution " + i);
        }
      }
      expect(ps.unwrap(PGStatement.class).isUseServerPrepare(),
          "pgjdbc switched to a named server-side statement after prepareThreshold");
    }
  }

  static void preparedThreshold1() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      PreparedStatement a = c.prepareStatement(
          "SELECT ?::int + 1, ?::bigint, ?::numeric(10,2), ?::boolean, ?::bytea, ?::timestamptz");
      PreparedStatement b = c.prepareStatement("SELECT count(*) FROM generate_series(1, ?)");
      PreparedStatement ins =
          c.prepareStatement("INSERT INTO " + t + "_items (id, val) VALUES (?, ?)");
      for (int i = 0; i < 20; i++) {
        a.setInt(1, i);
        a.setLong(2, 1L << 40 + (i % 5));
        a.setBigDecimal(3, new java.math.BigDecimal(i + ".25"));
        a.setBoolean(4, i % 2 == 0);
        a.setBytes(5, new byte[] {(byte) i, 0, (byte) 255});
        a.setTimestamp(6, new java.sql.Timestamp(1_600_000_000_000L + i * 1000L));
        try (ResultSet rs = a.executeQuery()) {
          expect(rs.next(), "row");
          expectEq(i + 1, rs.getInt(1), "int");
          expectEq(1L << 40 + (i % 5), rs.getLong(2), "bigint");
          expectEq(new java.math.BigDecimal(i + ".25"), rs.getBigDecimal(3), "numeric");
          expectEq(i % 2 == 0, rs.getBoolean(4), "bool");
          expect(Arrays.equals(new byte[] {(byte) i, 0, (byte) 255}, rs.getBytes(5)), "bytea");
          expectEq(1_600_000_000_000L + i * 1000L, rs.getTimestamp(6).getTime(), "timestamptz");
        }
        b.setInt(1, i + 1);
        expectEq((long) i + 1, firstLong(b), "count(*) via second statement");
        ins.setInt(1, 1000 + i);
        ins.setString(2, "p" + i);
        expectEq(1, ins.executeUpdate(), "insert row count");
      }
      expect(a.unwrap(PGStatement.class).isUseServerPrepare(), "a is server-prepared");
      // Closing a statement and preparing the same text again (pgjdbc re-Parses).
      b.close();
      try (PreparedStatement b2 = c.prepareStatement("SELECT count(*) FROM generate_series(1, ?)")) {
        for (int i = 0; i < 5; i++) {
          b2.setInt(1, 7);
          expectEq(7L, firstLong(b2), "re-prepared statement");
        }
      }
      a.close();
      ins.close();
      expectEq(20L, countOnPrimary(c, "SELECT count(*) FROM " + t + "_items WHERE id >= 1000"),
          "rows inserted by the prepared INSERT");
    }
  }

  static long firstLong(PreparedStatement ps) throws SQLException {
    try (ResultSet rs = ps.executeQuery()) {
      expect(rs.next(), "row");
      return rs.getLong(1);
    }
  }

  static void simpleQueryMode() throws Exception {
    try (Connection c = connect("preferQueryMode", "simple");
        PreparedStatement ps = c.prepareStatement("SELECT ?::int * 3, ?::text")) {
      for (int i = 0; i < 5; i++) {
        ps.setInt(1, i);
        ps.setString(2, "it's " + i);
        try (ResultSet rs = ps.executeQuery()) {
          expect(rs.next(), "row");
          expectEq(i * 3, rs.getInt(1), "int");
          expectEq("it's " + i, rs.getString(2), "quoted text");
        }
      }
      expectSqlState("42601", () -> one(c, "SELEC 1"), "syntax error");
      expectEq(1L, one(c, "SELECT 1"), "works after the error");
    }
  }

  static void transactions() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      c.setAutoCommit(false);
      try (PreparedStatement ins =
          c.prepareStatement("INSERT INTO " + t + "_items (id, val) VALUES (?, ?)")) {
        for (int i = 1; i <= 10; i++) {
          ins.setInt(1, i);
          ins.setString(2, "c" + i);
          ins.executeUpdate();
        }
        c.commit();
        for (int i = 11; i <= 20; i++) {
          ins.setInt(1, i);
          ins.setString(2, "r" + i);
          ins.executeUpdate();
        }
        expectEq(20L, one(c, "SELECT count(*) FROM " + t + "_items WHERE id <= 20"),
            "own uncommitted rows visible inside the transaction");
        c.rollback();
        expectEq(10L, one(c, "SELECT count(*) FROM " + t + "_items WHERE id <= 20"),
            "after commit of 10 and rollback of 10");
        c.commit();
        // Savepoints.
        ins.setInt(1, 21);
        ins.setString(2, "s21");
        ins.executeUpdate();
        Savepoint sp = c.setSavepoint();
        ins.setInt(1, 22);
        ins.setString(2, "s22");
        ins.executeUpdate();
        c.rollback(sp);
        c.commit();
        expectEq(1L, one(c, "SELECT count(*) FROM " + t + "_items WHERE id IN (21, 22)"),
            "rollback to savepoint");
        c.commit();
      }
      // Autocommit after transactions; read-your-writes in transaction mode.
      c.setAutoCommit(true);
      try (Statement st = c.createStatement()) {
        st.executeUpdate("INSERT INTO " + t + "_items VALUES (23, 'ac')");
      }
      expectEq("ac", str(c, "SELECT val FROM " + t + "_items WHERE id = 23"),
          "autocommit read of this connection's own autocommit write");
    }
  }

  static void errors() throws Exception {
    try (Connection c = connect(); Connection p = connect("prepareThreshold", "1")) {
      expectSqlState("23505", () -> {
        try (Statement st = c.createStatement()) {
          st.executeUpdate("INSERT INTO " + t + "_items VALUES (1, 'dup')");
        }
      }, "unique violation (autocommit)");
      expectEq(1L, one(c, "SELECT 1"), "connection works after the error");
      expectSqlState("42601", () -> one(c, "SELEC 1"), "syntax error");
      expectSqlState("42P01", () -> one(c, "SELECT * FROM no_such_table_xyz"), "missing table");
      expectEq(2L, one(c, "SELECT 2"), "connection works after more errors");

      // The same named statement fails, then succeeds (and its Parse survived the failure).
      try (PreparedStatement ins =
          p.prepareStatement("INSERT INTO " + t + "_items (id, val) VALUES (?, ?)")) {
        for (int round = 0; round < 3; round++) {
          ins.setInt(1, 1);
          ins.setString(2, "dup");
          expectSqlState("23505", ins::executeUpdate, "prepared unique violation " + round);
          ins.setInt(1, 500 + round);
          ins.setString(2, "ok");
          expectEq(1, ins.executeUpdate(), "same prepared statement after its error " + round);
        }
      }
      // An error inside a transaction: 25P02 until rollback, then normal.
      p.setAutoCommit(false);
      try (Statement st = p.createStatement()) {
        st.executeUpdate("INSERT INTO " + t + "_items VALUES (600, 'x')");
        expectSqlState("23505", () -> st.executeUpdate("INSERT INTO " + t + "_items VALUES (1, 'd')"),
            "unique violation in a transaction");
        expectSqlState("25P02", () -> one(p, "SELECT 1"), "aborted transaction");
        p.rollback();
        expectEq(0L, one(p, "SELECT count(*) FROM " + t + "_items WHERE id = 600"),
            "rolled back insert");
        p.commit();
      }
      p.setAutoCommit(true);
      expectEq(3L, one(p, "SELECT 3"), "connection works after the rollback");
    }
  }

  static void batchInsert() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      c.setAutoCommit(false);
      try (PreparedStatement ps =
          c.prepareStatement("INSERT INTO " + t + "_batch (id, val) VALUES (?, ?)")) {
        for (int i = 0; i < 2000; i++) {
          ps.setInt(1, i);
          ps.setString(2, "b" + i);
          ps.addBatch();
        }
        int[] counts = ps.executeBatch();
        expectEq(2000, counts.length, "batch result count");
      }
      c.commit();
      expectEq(2000L, one(c, "SELECT count(*) FROM " + t + "_batch"), "rows after batch");
      c.commit();
      // A batch with a failing row: the whole batch fails, the connection recovers.
      try (PreparedStatement ps =
          c.prepareStatement("INSERT INTO " + t + "_batch (id, val) VALUES (?, ?)")) {
        for (int i = 1990; i < 2010; i++) {
          ps.setInt(1, i);
          ps.setString(2, "x");
          ps.addBatch();
        }
        try {
          ps.executeBatch();
          throw new AssertionError("batch with duplicate keys succeeded");
        } catch (java.sql.BatchUpdateException e) {
          SQLException next = e.getNextException();
          expectEq("23505", next != null ? next.getSQLState() : e.getSQLState(), "batch error");
        }
      }
      c.rollback();
      expectEq(2000L, one(c, "SELECT count(*) FROM " + t + "_batch"), "rows after failed batch");
      c.commit();
    }
  }

  static void manyRows() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      // Cursor-style fetch: a portal read 1000 rows per Execute (needs a transaction).
      c.setAutoCommit(false);
      try (PreparedStatement ps =
          c.prepareStatement("SELECT i, repeat('x', 20) FROM generate_series(1, ?) i")) {
        ps.setFetchSize(1000);
        ps.setInt(1, 100_000);
        long n = 0, sum = 0;
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            n++;
            sum += rs.getInt(1);
          }
        }
        expectEq(100_000L, n, "rows fetched 1000 at a time");
        expectEq(5_000_050_000L, sum, "sum of fetched rows");
      }
      c.commit();
      c.setAutoCommit(true);
      // Everything in one go.
      try (Statement st = c.createStatement();
          ResultSet rs = st.executeQuery(
              "SELECT i, md5(i::text) FROM generate_series(1, 100000) i")) {
        long n = 0, sum = 0;
        while (rs.next()) {
          n++;
          sum += rs.getInt(1);
          if (rs.getString(2).length() != 32) throw new AssertionError("md5 column");
        }
        expectEq(100_000L, n, "rows");
        expectEq(5_000_050_000L, sum, "sum");
      }
    }
  }

  static void largeValues() throws Exception {
    try (Connection c = connect("prepareThreshold", "1");
        PreparedStatement ps = c.prepareStatement("SELECT ?::bytea, length(?::text)")) {
      byte[] big = new byte[3 * 1024 * 1024];
      for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 31 + 7);
      char[] chars = new char[2 * 1024 * 1024];
      Arrays.fill(chars, 'z');
      for (int round = 0; round < 2; round++) {
        ps.setBytes(1, big);
        ps.setString(2, new String(chars));
        try (ResultSet rs = ps.executeQuery()) {
          expect(rs.next(), "row");
          expect(Arrays.equals(big, rs.getBytes(1)), "3 MiB bytea round trip");
          expectEq(chars.length, rs.getInt(2), "2 MiB text parameter");
        }
      }
    }
  }

  static void copy() throws Exception {
    try (Connection c = connect()) {
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      StringBuilder sb = new StringBuilder();
      for (int i = 0; i < 20_000; i++) sb.append(i).append('\t').append("row ").append(i).append('\n');
      long in = cm.copyIn("COPY " + t + "_copy (id, val) FROM STDIN", new StringReader(sb.toString()));
      expectEq(20_000L, in, "rows copied in");
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      long outRows = cm.copyOut("COPY (SELECT i, 'v' || i FROM generate_series(1, 30000) i) TO STDOUT", out);
      expectEq(30_000L, outRows, "rows copied out");
      expectEq(30_000L, out.toString().chars().filter(ch -> ch == '\n').count(), "lines copied out");
      // COPY FROM with bad data: error, then the connection works.
      expectSqlState("22P02", () -> cm.copyIn("COPY " + t + "_copy (id, val) FROM STDIN",
          new StringReader("1\tok\nnot_a_number\tbad\n")), "bad COPY data");
      expectEq(1L, one(c, "SELECT 1"), "connection works after a failed COPY");
      c.setAutoCommit(false);
      cm.copyIn("COPY " + t + "_copy (id, val) FROM STDIN", new StringReader("-1\tin txn\n"));
      c.rollback();
      expectEq(20_000L, one(c, "SELECT count(*) FROM " + t + "_copy"), "rolled back COPY");
      c.commit();
      c.setAutoCommit(true);
    }
  }

  static void metadata() throws Exception {
    try (Connection c = connect()) {
      int n = 0;
      try (ResultSet rs = c.getMetaData().getTables(null, "public", t + "_%", new String[] {"TABLE"})) {
        while (rs.next()) n++;
      }
      // The tables were just created on the primary; in transaction mode this autocommit read
      // may go to a replica, which has them once the CREATEs replayed (read_your_writes is per
      // connection). Poll briefly.
      long deadline = System.currentTimeMillis() + 5000;
      while (n < 4 && System.currentTimeMillis() < deadline) {
        Thread.sleep(100);
        n = 0;
        try (ResultSet rs = c.getMetaData().getTables(null, "public", t + "_%", new String[] {"TABLE"})) {
          while (rs.next()) n++;
        }
      }
      expectEq(4, n, "tables in DatabaseMetaData.getTables");
      try (ResultSet rs = c.getMetaData().getColumns(null, "public", t + "_items", null)) {
        int cols = 0;
        while (rs.next()) cols++;
        expectEq(2, cols, "columns");
      }
    }
  }

  // setReadOnly(true) in a transaction: pgjdbc sends BEGIN READ ONLY, which pgswitch may run on
  // a replica (transaction mode); a write in it gets PostgreSQL's 25006.
  static void readOnly() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      c.setAutoCommit(false);
      c.setReadOnly(true);
      for (int i = 0; i < 5; i++) {
        expectEq("on", str(c, "SHOW transaction_read_only"), "transaction_read_only");
        expectEq(3L, one(c, "SELECT count(*) FROM generate_series(1, 3)"), "read");
        c.commit();
      }
      expectSqlState("25006", () -> {
        try (Statement st = c.createStatement()) {
          st.executeUpdate("INSERT INTO " + t + "_items VALUES (700, 'ro')");
        }
      }, "write in a read-only transaction");
      c.rollback();
      c.setReadOnly(false);
      try (Statement st = c.createStatement()) {
        st.executeUpdate("INSERT INTO " + t + "_items VALUES (700, 'rw')");
      }
      c.commit();
      expectEq("rw", str(c, "SELECT val FROM " + t + "_items WHERE id = 700"), "write after read-only");
      c.commit();
    }
  }

  // Two named portals read alternately in one transaction (fetch size on two statements).
  static void twoPortals() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      c.setAutoCommit(false);
      try (PreparedStatement a = c.prepareStatement("SELECT i FROM generate_series(1, 5000) i");
          PreparedStatement b = c.prepareStatement("SELECT -i FROM generate_series(1, 5000) i")) {
        a.setFetchSize(100);
        b.setFetchSize(70);
        try (ResultSet ra = a.executeQuery(); ResultSet rb = b.executeQuery()) {
          for (int i = 1; i <= 5000; i++) {
            expect(ra.next() && rb.next(), "rows left at " + i);
            expectEq(i, ra.getInt(1), "portal a");
            expectEq(-i, rb.getInt(1), "portal b");
          }
          expect(!ra.next() && !rb.next(), "no extra rows");
        }
      }
      c.commit();
    }
  }

  // More distinct named statements than pgswitch keeps per server connection
  // (max_prepared_statements = 200): evicted ones are prepared again when used.
  static void manyStatements() throws Exception {
    try (Connection c = connect("prepareThreshold", "1", "preparedStatementCacheQueries", "400")) {
      final int n = 260;
      List<PreparedStatement> ps = new ArrayList<>();
      for (int i = 0; i < n; i++) ps.add(c.prepareStatement("SELECT ?::int + " + i));
      for (int round = 0; round < 3; round++) {
        for (int k = 0; k < n; k++) {
          int i = round == 1 ? n - 1 - k : (k * 7 + round) % n;
          PreparedStatement p = ps.get(i);
          p.setInt(1, round);
          expectEq((long) round + i, firstLong(p), "statement " + i + " round " + round);
        }
      }
      for (PreparedStatement p : ps) p.close();
      expectEq(1L, one(c, "SELECT 1"), "works after closing the statements");
    }
  }

  // A named SELECT * whose result type changes (ALTER TABLE): PostgreSQL answers 0A000 "cached
  // plan must not change result type" on a server that had it prepared; pgjdbc re-prepares.
  static void resultTypeChange() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      try (Statement st = c.createStatement()) {
        st.execute("DROP TABLE IF EXISTS " + t + "_shape");
        st.execute("CREATE TABLE " + t + "_shape (a int)");
        st.execute("INSERT INTO " + t + "_shape VALUES (1)");
      }
      try (PreparedStatement ps = c.prepareStatement("SELECT * FROM " + t + "_shape WHERE a = ?")) {
        for (int i = 0; i < 5; i++) {
          ps.setInt(1, 1);
          try (ResultSet rs = ps.executeQuery()) {
            expectEq(1, rs.getMetaData().getColumnCount(), "columns before ALTER");
          }
        }
        try (Statement st = c.createStatement()) {
          st.execute("ALTER TABLE " + t + "_shape ADD COLUMN b text DEFAULT 'x'");
        }
        // pgjdbc retries once after 0A000 with a fresh Parse, so the application sees no
        // error on PostgreSQL; through pgswitch, the fresh Parse must not land on another
        // stale copy of the statement (servers share statements by text).
        for (int i = 0; i < 5; i++) {
          ps.setInt(1, 1);
          try (ResultSet rs = ps.executeQuery()) {
            expectEq(2, rs.getMetaData().getColumnCount(), "columns after ALTER, round " + i);
            expect(rs.next(), "row");
            expectEq("x", rs.getString(2), "new column");
          }
        }
      }
      // Another connection preparing the same text after the change.
      try (Connection d = connect("prepareThreshold", "1");
          PreparedStatement ps = d.prepareStatement("SELECT * FROM " + t + "_shape WHERE a = ?")) {
        for (int i = 0; i < 5; i++) {
          ps.setInt(1, 1);
          try (ResultSet rs = ps.executeQuery()) {
            expectEq(2, rs.getMetaData().getColumnCount(), "columns, new connection, round " + i);
          }
        }
      }
    }
  }

  // autosave=always: pgjdbc wraps each statement in SAVEPOINT / RELEASE, so an error does not
  // abort the transaction.
  static void autosave() throws Exception {
    try (Connection c = connect("prepareThreshold", "1", "autosave", "always")) {
      c.setAutoCommit(false);
      try (PreparedStatement ins =
          c.prepareStatement("INSERT INTO " + t + "_items (id, val) VALUES (?, ?)")) {
        ins.setInt(1, 800);
        ins.setString(2, "a");
        ins.executeUpdate();
        ins.setInt(1, 800);
        ins.setString(2, "dup");
        expectSqlState("23505", ins::executeUpdate, "duplicate with autosave");
        ins.setInt(1, 801);
        ins.setString(2, "b");
        ins.executeUpdate();
      }
      c.commit();
      expectEq(2L, one(c, "SELECT count(*) FROM " + t + "_items WHERE id IN (800, 801)"),
          "rows after autosave recovered the transaction");
      c.commit();
    }
  }

  // setTransactionIsolation: pgjdbc sends SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION
  // LEVEL ..., a session setting PostgreSQL does not report (pgswitch pins the connection).
  static void isolationLevel() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
      c.setAutoCommit(false);
      for (int i = 0; i < 5; i++) {
        expectEq("serializable", str(c, "SHOW transaction_isolation"), "isolation, round " + i);
        c.commit();
      }
      c.setAutoCommit(true);
      c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
      expectEq("read committed", str(c, "SHOW transaction_isolation"), "back to read committed");
    }
  }

  // pgjdbc sends the JVM's time zone as the TimeZone startup parameter: every server the
  // client lands on has it.
  static void startupTimezone() throws Exception {
    String want = java.util.TimeZone.getDefault().getID();
    try (Connection c = connect("prepareThreshold", "1");
        Connection other = connect("options", "-c TimeZone=UTC");
        PreparedStatement ps = c.prepareStatement("SELECT current_setting('TimeZone')")) {
      for (int i = 0; i < 20; i++) {
        try (ResultSet rs = ps.executeQuery()) {
          expect(rs.next(), "row");
          expectEq(want, rs.getString(1), "TimeZone, round " + i);
        }
        expectEq("UTC", str(other, "SHOW TimeZone"), "options -c TimeZone, round " + i);
      }
    }
    // currentSchema is sent as the search_path startup parameter (not reported by PostgreSQL).
    try (Connection c = connect("prepareThreshold", "1", "currentSchema", "jdbc_nowhere,public");
        PreparedStatement ps = c.prepareStatement(
            "SELECT current_setting('search_path'), array_to_string(current_schemas(false), ',')")) {
      for (int i = 0; i < 10; i++) {
        try (ResultSet rs = ps.executeQuery()) {
          expect(rs.next(), "row");
          expectEq("jdbc_nowhere,public", rs.getString(1), "search_path, round " + i);
          expectEq("public", rs.getString(2), "schemas in the search_path that exist, round " + i);
        }
      }
    }
  }

  // 12 connections open at once, each used in turn: in transaction mode they share a few
  // server connections, which only works if nothing pgjdbc does on connect (it runs
  // "SET extra_float_digits = 3") pins a connection to its server.
  static void moreConnectionsThanServers() throws Exception {
    List<Connection> cs = new ArrayList<>();
    try {
      for (int i = 0; i < 12; i++) cs.add(connect("socketTimeout", "15", "ApplicationName", "jdbc_many" + i));
      for (int round = 0; round < 3; round++) {
        for (int i = 0; i < cs.size(); i++) {
          expectEq("jdbc_many" + i, str(cs.get(i), "SHOW application_name"), "connection " + i);
        }
      }
    } finally {
      for (Connection c : cs) c.close();
    }
  }

  // 20 connections, each running transactions with named statements, through a small pool.
  static void concurrency() throws Exception {
    final int workers = 20, txns = 15;
    ExecutorService ex = Executors.newFixedThreadPool(workers);
    try {
      List<Future<Void>> fs = new ArrayList<>();
      CountDownLatch start = new CountDownLatch(1);
      for (int w = 0; w < workers; w++) {
        final int id = w;
        fs.add(ex.submit((Callable<Void>) () -> {
          try (Connection c = connect("prepareThreshold", "1", "ApplicationName", "jdbc_w" + id)) {
            try (Statement st = c.createStatement()) {
              st.execute("SET TIME ZONE '" + (id % 2 == 0 ? "UTC" : "Asia/Tokyo") + "'");
            }
            start.await();
            c.setAutoCommit(false);
            PreparedStatement ins = c.prepareStatement(
                "INSERT INTO " + t + "_conc (worker, n, app) VALUES (?, ?, current_setting('application_name'))");
            PreparedStatement cnt =
                c.prepareStatement("SELECT count(*), current_setting('TimeZone') FROM " + t + "_conc WHERE worker = ?");
            for (int n = 0; n < txns; n++) {
              ins.setInt(1, id);
              ins.setInt(2, n);
              ins.executeUpdate();
              cnt.setInt(1, id);
              try (ResultSet rs = cnt.executeQuery()) {
                expect(rs.next(), "row");
                expectEq((long) n + 1, rs.getLong(1), "worker " + id + " sees its rows");
                expectEq(id % 2 == 0 ? "UTC" : "Asia/Tokyo", rs.getString(2), "worker " + id + " TimeZone");
              }
              if (n % 5 == 4) {
                c.rollback();  // this one's insert is undone
                ins.setInt(1, id);
                ins.setInt(2, n);
                ins.executeUpdate();
              }
              c.commit();
            }
            c.setAutoCommit(true);
            expectEq("jdbc_w" + id, str(c, "SHOW application_name"), "application_name");
          }
          return null;
        }));
      }
      start.countDown();
      for (Future<Void> f : fs) f.get(90, TimeUnit.SECONDS);
    } finally {
      ex.shutdownNow();
    }
    try (Connection c = connect()) {
      expectEq((long) workers * txns, countOnPrimary(c, "SELECT count(*) FROM " + t + "_conc"),
          "rows from all workers");
      expectEq(0L, countOnPrimary(c, "SELECT count(*) FROM " + t + "_conc WHERE app <> 'jdbc_w' || worker"),
          "rows whose application_name was another worker's");
    }
  }

  // A client's SET application_name / TimeZone stay its own while other clients with other
  // settings share the server connections.
  static void settings() throws Exception {
    AtomicBoolean stop = new AtomicBoolean(false);
    ExecutorService ex = Executors.newFixedThreadPool(3);
    List<Future<Void>> noise = new ArrayList<>();
    try {
      for (int w = 0; w < 3; w++) {
        final int id = w;
        noise.add(ex.submit((Callable<Void>) () -> {
          try (Connection c = connect("prepareThreshold", "1", "ApplicationName", "noise" + id)) {
            try (Statement st = c.createStatement()) {
              st.execute("SET TIME ZONE 'UTC'");
            }
            while (!stop.get()) {
              expectEq("UTC", str(c, "SHOW TimeZone"), "noise TimeZone");
              expectEq("noise" + id, str(c, "SHOW application_name"), "noise application_name");
            }
          }
          return null;
        }));
      }
      try (Connection c = connect("prepareThreshold", "1")) {
        try (Statement st = c.createStatement()) {
          st.execute("SET application_name = 'jdbc_settings'");
          st.execute("SET TIME ZONE 'America/New_York'");
        }
        try (PreparedStatement ps = c.prepareStatement(
            "SELECT current_setting('application_name'), current_setting('TimeZone'), "
                + "('2020-01-01 00:00:00+00'::timestamptz)::text")) {
          for (int i = 0; i < 50; i++) {
            try (ResultSet rs = ps.executeQuery()) {
              expect(rs.next(), "row");
              expectEq("jdbc_settings", rs.getString(1), "application_name, round " + i);
              expectEq("America/New_York", rs.getString(2), "TimeZone, round " + i);
              expectEq("2019-12-31 19:00:00-05", rs.getString(3), "timestamptz text, round " + i);
            }
          }
        }
        try (Statement st = c.createStatement()) {
          st.execute("RESET TIME ZONE");
        }
        String tz = str(c, "SHOW TimeZone");
        expect(!tz.equals("America/New_York"), "RESET TIME ZONE gave " + tz);
      }
    } finally {
      stop.set(true);
      for (Future<Void> f : noise) f.get(30, TimeUnit.SECONDS);
      ex.shutdownNow();
    }
  }

  static void cancel() throws Exception {
    try (Connection c = connect(); Connection p = connect("prepareThreshold", "1")) {
      cancelOne(c, c.createStatement(), "SELECT pg_sleep(10)", "plain statement");
      PreparedStatement ps = p.prepareStatement("SELECT pg_sleep(?)");
      ps.setInt(1, 10);
      cancelOne(p, ps, null, "named prepared statement");
      expectEq(1L, one(c, "SELECT 1"), "connection works after cancel");
      p.setAutoCommit(false);
      cancelOne(p, p.createStatement(), "SELECT pg_sleep(10)", "inside a transaction");
      expectSqlState("25P02", () -> one(p, "SELECT 1"), "transaction aborted by cancel");
      p.rollback();
      p.setAutoCommit(true);
      expectEq(1L, one(p, "SELECT 1"), "connection works after rollback");
      // setQueryTimeout uses the same cancel path.
      try (Statement st = c.createStatement()) {
        st.setQueryTimeout(1);
        long t0 = System.nanoTime();
        expectSqlState("57014", () -> st.execute("SELECT pg_sleep(10)"), "query timeout");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        expect(ms < 5000, "query timeout took " + ms + " ms");
      }
    }
  }

  static void cancelOne(Connection c, Statement st, String sql, String what) throws Exception {
    ExecutorService ex = Executors.newSingleThreadExecutor();
    try {
      Future<?> f = ex.submit(() -> {
        Thread.sleep(500);
        st.cancel();
        return null;
      });
      long t0 = System.nanoTime();
      expectSqlState("57014", () -> {
        if (sql == null) ((PreparedStatement) st).execute();
        else st.execute(sql);
      }, "cancelled pg_sleep(10), " + what);
      long ms = (System.nanoTime() - t0) / 1_000_000;
      f.get(10, TimeUnit.SECONDS);
      expect(ms < 5000, what + ": cancel took " + ms + " ms");
    } finally {
      ex.shutdownNow();
    }
  }
}
