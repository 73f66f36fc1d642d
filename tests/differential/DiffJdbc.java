// pgjdbc sessions of the differential suite: CREATE TABLE then read, batches, DatabaseMetaData
// right after DDL, commit on connection A then read on connection B, savepoints with errors,
// CopyManager in/out, a writing plpgsql function called as SELECT. Prints a JSON transcript,
// one line per step ({"scenario", "step", "result"}), like tests/differential/recorder.py.
//   javac -cp /usr/share/java/postgresql.jar -d OUT DiffJdbc.java
//   java -cp OUT:/usr/share/java/postgresql.jar DiffJdbc HOST PORT USER PASSWORD DB PREFIX
import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PSQLException;

public class DiffJdbc {
  interface Step {
    Object run() throws Exception;
  }

  interface Scenario {
    void run() throws Exception;
  }

  static String host, port, user, password, db, P, scenario = "?";

  public static void main(String[] args) throws Exception {
    host = args[0];
    port = args[1];
    user = args[2];
    password = args[3];
    db = args[4];
    P = args[5];
    scenario("jdbc_create_read", DiffJdbc::createRead);
    scenario("jdbc_batch", DiffJdbc::batch);
    scenario("jdbc_metadata", DiffJdbc::metadata);
    scenario("jdbc_two_connections", DiffJdbc::twoConnections);
    scenario("jdbc_savepoints", DiffJdbc::savepoints);
    scenario("jdbc_copy", DiffJdbc::copy);
    scenario("jdbc_write_function", DiffJdbc::writeFunction);
    scenario("jdbc_write_function_replicated", DiffJdbc::writeFunctionReplicated);
    System.out.println("{\"done\": true}");
    System.out.flush();
  }

  // -- recording --------------------------------------------------------------------------------
  static void scenario(String name, Scenario s) {
    String only = System.getenv("DIFF_ONLY");
    if (only != null && !only.isEmpty() && !Arrays.asList(only.split(",")).contains(name)) return;
    scenario = name;
    try {
      s.run();
    } catch (Throwable e) {
      e.printStackTrace(System.err);
      emit("scenario_aborted", error(e));
    }
  }

  static Object step(String name, Step s) {
    try {
      Object r = s.run();
      emit(name, json(r));
      return r;
    } catch (Throwable e) {
      emit(name, error(e));
      return null;
    }
  }

  static void emit(String step, String resultJson) {
    System.out.println("{\"scenario\": " + str(scenario) + ", \"step\": " + str(step)
        + ", \"result\": " + resultJson + "}");
    System.out.flush();
  }

  static String error(Throwable e) {
    if (e instanceof BatchUpdateException && ((SQLException) e).getNextException() != null) {
      e = ((SQLException) e).getNextException();
    }
    if (e instanceof SQLException && ((SQLException) e).getSQLState() != null) {
      String msg = e.getMessage();
      if (e instanceof PSQLException && ((PSQLException) e).getServerErrorMessage() != null) {
        msg = ((PSQLException) e).getServerErrorMessage().getMessage();
      }
      return "{\"error\": " + str(((SQLException) e).getSQLState()) + ", \"message\": "
          + str(msg) + "}";
    }
    return "{\"exception\": " + str(e.getClass().getSimpleName()) + ", \"message\": "
        + str(String.valueOf(e.getMessage())) + "}";
  }

  static String str(String s) {
    if (s == null) return "null";
    StringBuilder b = new StringBuilder("\"");
    for (char ch : s.toCharArray()) {
      if (ch == '"' || ch == '\\') b.append('\\').append(ch);
      else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
      else b.append(ch);
    }
    return b.append('"').toString();
  }

  static String json(Object o) {
    if (o == null) return "null";
    if (o instanceof String) return str((String) o);
    if (o instanceof Number || o instanceof Boolean) return o.toString();
    if (o instanceof int[]) {
      List<Object> l = new ArrayList<>();
      for (int x : (int[]) o) l.add(x);
      return json(l);
    }
    if (o instanceof List) {
      List<String> parts = new ArrayList<>();
      for (Object x : (List<?>) o) parts.add(json(x));
      return "[" + String.join(", ", parts) + "]";
    }
    return str(o.toString());
  }

  // -- helpers ----------------------------------------------------------------------------------
  /** Lets connections opened just now age like pooled ones: longer than the replicas' apply
   * delay plus a health round (the harness sets DIFF_SETTLE_MS). */
  static void settle() throws InterruptedException {
    String ms = System.getenv("DIFF_SETTLE_MS");
    Thread.sleep(ms == null || ms.isEmpty() ? 1500 : Long.parseLong(ms));
  }

  static Connection connect(String... kv) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", password);
    p.setProperty("sslmode", "disable");
    p.setProperty("connectTimeout", "20");
    p.setProperty("socketTimeout", "60");
    p.setProperty("ApplicationName", "diff_jdbc");
    for (int i = 0; i + 1 < kv.length; i += 2) p.setProperty(kv[i], kv[i + 1]);
    return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + db, p);
  }

  /** Rows of a result set, every value as getString (column labels first). */
  static List<Object> rows(ResultSet rs, String... columns) throws SQLException {
    List<Object> out = new ArrayList<>();
    ResultSetMetaData md = rs.getMetaData();
    List<Object> head = new ArrayList<>();
    if (columns.length == 0) {
      for (int i = 1; i <= md.getColumnCount(); i++) head.add(md.getColumnLabel(i));
    } else {
      head.addAll(Arrays.asList(columns));
    }
    out.add(head);
    while (rs.next()) {
      List<Object> r = new ArrayList<>();
      for (Object col : head) r.add(rs.getString((String) col));
      out.add(r);
    }
    rs.close();
    return out;
  }

  static List<Object> query(Connection c, String sql) throws SQLException {
    try (Statement st = c.createStatement()) {
      return rows(st.executeQuery(sql));
    }
  }

  static List<Object> queryP(Connection c, String sql, Object... params) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < params.length; i++) ps.setObject(i + 1, params[i]);
      return rows(ps.executeQuery());
    }
  }

  /** execute(): the update count, or the rows when it returned some. */
  static Object exec(Connection c, String sql) throws SQLException {
    try (Statement st = c.createStatement()) {
      if (st.execute(sql)) return rows(st.getResultSet());
      return st.getUpdateCount();
    }
  }

  static Object execP(Connection c, String sql, Object... params) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < params.length; i++) ps.setObject(i + 1, params[i]);
      if (ps.execute()) return rows(ps.getResultSet());
      return ps.getUpdateCount();
    }
  }

  // -- scenarios --------------------------------------------------------------------------------
  static void createRead() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      step("create", () -> exec(c, "CREATE TABLE " + P + "cr (id int PRIMARY KEY, v text)"));
      step("read_empty", () -> query(c, "SELECT id, v FROM " + P + "cr ORDER BY id"));
      step("insert", () -> execP(c, "INSERT INTO " + P + "cr VALUES (?, ?), (?, ?)", 1, "one",
          2, "two"));
      step("read_back", () -> queryP(c, "SELECT id, v FROM " + P + "cr WHERE id > ? ORDER BY id",
          0));
      for (int i = 0; i < 3; i++) {
        final int n = 10 + i;
        step("insert_prepared_" + i, () -> execP(c, "INSERT INTO " + P + "cr VALUES (?, ?)", n,
            "p" + n));
        step("count_prepared_" + i, () -> queryP(c, "SELECT count(*) FROM " + P + "cr"));
      }
      step("update", () -> exec(c, "UPDATE " + P + "cr SET v = upper(v)"));
      step("read_updated", () -> query(c, "SELECT id, v FROM " + P + "cr ORDER BY id"));
      step("drop", () -> exec(c, "DROP TABLE " + P + "cr"));
      step("read_dropped_42P01", () -> query(c, "SELECT count(*) FROM " + P + "cr"));
    }
  }

  static void batch() throws Exception {
    try (Connection c = connect()) {
      step("create", () -> exec(c, "CREATE TABLE " + P + "b (id int PRIMARY KEY, v text)"));
      step("prepared_batch", () -> {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + P + "b VALUES (?, ?)")) {
          for (int i = 0; i < 50; i++) {
            ps.setInt(1, i);
            ps.setString(2, "v" + i);
            ps.addBatch();
          }
          return ps.executeBatch();
        }
      });
      step("count_after_batch", () -> query(c, "SELECT count(*), sum(id) FROM " + P + "b"));
      step("statement_batch", () -> {
        try (Statement st = c.createStatement()) {
          st.addBatch("INSERT INTO " + P + "b VALUES (100, 'x')");
          st.addBatch("UPDATE " + P + "b SET v = 'y' WHERE id < 10");
          st.addBatch("DELETE FROM " + P + "b WHERE id >= 40 AND id < 50");
          return st.executeBatch();
        }
      });
      step("read_after_statement_batch", () -> query(c,
          "SELECT count(*), count(*) FILTER (WHERE v = 'y') FROM " + P + "b"));
      step("batch_with_duplicate_23505", () -> {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + P + "b VALUES (?, ?)")) {
          for (int id : new int[] {200, 201, 1, 202}) {
            ps.setInt(1, id);
            ps.setString(2, "d");
            ps.addBatch();
          }
          return ps.executeBatch();
        }
      });
      step("count_after_failed_batch", () -> query(c, "SELECT count(*) FROM " + P + "b"));
      c.setAutoCommit(false);
      step("batch_in_transaction", () -> {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + P + "b VALUES (?, ?)")) {
          for (int i = 300; i < 310; i++) {
            ps.setInt(1, i);
            ps.setString(2, "t");
            ps.addBatch();
          }
          int[] r = ps.executeBatch();
          c.commit();
          return r;
        }
      });
      c.setAutoCommit(true);
      step("count_after_transaction_batch", () -> query(c, "SELECT count(*) FROM " + P + "b"));
    }
  }

  static void metadata() throws Exception {
    try (Connection c = connect()) {
      step("ddl", () -> exec(c, "CREATE TABLE " + P + "md (id int PRIMARY KEY, name varchar(40)"
          + " NOT NULL, at timestamptz); CREATE INDEX " + P + "md_name ON " + P + "md (name); "
          + "CREATE VIEW " + P + "mdv AS SELECT id FROM " + P + "md"));
      DatabaseMetaData md = c.getMetaData();
      step("get_tables", () -> rows(md.getTables(null, "public", P + "md%", null),
          "TABLE_NAME", "TABLE_TYPE"));
      step("get_columns", () -> rows(md.getColumns(null, "public", P + "md", null),
          "COLUMN_NAME", "TYPE_NAME", "COLUMN_SIZE", "IS_NULLABLE", "ORDINAL_POSITION"));
      step("get_primary_keys", () -> rows(md.getPrimaryKeys(null, "public", P + "md"),
          "COLUMN_NAME", "PK_NAME"));
      step("get_index_info", () -> rows(md.getIndexInfo(null, "public", P + "md", false, false),
          "INDEX_NAME", "NON_UNIQUE", "COLUMN_NAME"));
      step("result_set_metadata", () -> {
        try (Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT * FROM " + P + "md")) {
          ResultSetMetaData m = rs.getMetaData();
          List<Object> out = new ArrayList<>();
          for (int i = 1; i <= m.getColumnCount(); i++) {
            out.add(Arrays.asList(m.getColumnName(i), m.getColumnTypeName(i),
                m.isNullable(i), m.getTableName(i)));
          }
          return out;
        }
      });
      step("alter", () -> exec(c, "ALTER TABLE " + P + "md ADD COLUMN extra int"));
      step("get_columns_after_alter", () -> rows(md.getColumns(null, "public", P + "md", null),
          "COLUMN_NAME", "TYPE_NAME"));
    }
  }

  static void twoConnections() throws Exception {
    try (Connection a = connect(); Connection b = connect()) {
      step("b_warm_up_read", () -> query(b, "SELECT 1"));
      settle();
      a.setAutoCommit(false);
      step("a_create_commit", () -> {
        Object r = exec(a, "CREATE TABLE " + P + "two (id int PRIMARY KEY, v text)");
        a.commit();
        return r;
      });
      step("b_read_new_table", () -> query(b, "SELECT count(*) FROM " + P + "two"));
      for (int i = 0; i < 3; i++) {
        final int n = i;
        step("a_insert_commit_" + i, () -> {
          Object r = execP(a, "INSERT INTO " + P + "two VALUES (?, ?)", n, "v" + n);
          a.commit();
          return r;
        });
        step("b_read_" + i, () -> query(b, "SELECT count(*), max(id) FROM " + P + "two"));
        step("b_read_prepared_" + i, () -> queryP(b, "SELECT v FROM " + P + "two WHERE id = ?", n));
      }
      step("a_update_commit", () -> {
        Object r = exec(a, "UPDATE " + P + "two SET v = 'new'");
        a.commit();
        return r;
      });
      step("b_read_update", () -> query(b, "SELECT DISTINCT v FROM " + P + "two"));
    }
  }

  static void savepoints() throws Exception {
    try (Connection c = connect()) {
      step("create", () -> exec(c, "CREATE TABLE " + P + "sp (id int PRIMARY KEY, v text)"));
      c.setAutoCommit(false);
      step("insert_1", () -> exec(c, "INSERT INTO " + P + "sp VALUES (1, 'a')"));
      Savepoint[] sp = new Savepoint[1];
      step("set_savepoint", () -> {
        sp[0] = c.setSavepoint("s1");
        return "ok";
      });
      step("insert_duplicate_23505", () -> exec(c, "INSERT INTO " + P + "sp VALUES (1, 'dup')"));
      step("statement_in_aborted_25P02", () -> query(c, "SELECT 1"));
      step("rollback_to_savepoint", () -> {
        c.rollback(sp[0]);
        return "ok";
      });
      step("insert_2", () -> exec(c, "INSERT INTO " + P + "sp VALUES (2, 'b')"));
      step("read_in_transaction", () -> query(c, "SELECT id, v FROM " + P + "sp ORDER BY id"));
      step("commit", () -> {
        c.commit();
        return "ok";
      });
      c.setAutoCommit(true);
      step("read_after_commit", () -> query(c, "SELECT id, v FROM " + P + "sp ORDER BY id"));
      c.setAutoCommit(false);
      step("error_22012", () -> query(c, "SELECT 1 / 0"));
      step("rollback", () -> {
        c.rollback();
        return "ok";
      });
      c.setAutoCommit(true);
      step("serialization_isolation", () -> {
        c.setAutoCommit(false);
        c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
        List<Object> r = query(c, "SELECT count(*), current_setting('transaction_isolation') FROM "
            + P + "sp");
        c.commit();
        c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
        c.setAutoCommit(true);
        return r;
      });
    }
  }

  static void copy() throws Exception {
    try (Connection c = connect()) {
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      step("create", () -> exec(c, "CREATE TABLE " + P + "cp (id int PRIMARY KEY, v text)"));
      step("copy_in", () -> {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 200; i++) sb.append(i).append('\t').append("row ").append(i).append('\n');
        return cm.copyIn("COPY " + P + "cp (id, v) FROM STDIN", new StringReader(sb.toString()));
      });
      step("count_after_copy_in", () -> query(c, "SELECT count(*), sum(id) FROM " + P + "cp"));
      step("copy_out", () -> {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        long n = cm.copyOut("COPY (SELECT id, v FROM " + P + "cp WHERE id < 3 ORDER BY id) TO STDOUT",
            out);
        return Arrays.asList(n, out.toString());
      });
      step("copy_in_bad_22P02", () -> cm.copyIn("COPY " + P + "cp (id, v) FROM STDIN",
          new StringReader("1000\tok\nbad\tx\n")));
      step("count_after_bad_copy", () -> query(c, "SELECT count(*) FROM " + P + "cp"));
    }
  }

  static void writeFunction() throws Exception {
    try (Connection c = connect("prepareThreshold", "1")) {
      step("create", () -> exec(c, "CREATE TABLE " + P + "wf (id serial PRIMARY KEY, note text); "
          + "CREATE FUNCTION " + P + "wf_add(n text) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
          + "INSERT INTO " + P + "wf (note) VALUES (n); RETURN (SELECT count(*) FROM " + P
          + "wf); END $$"));
      step("call_statement", () -> query(c, "SELECT " + P + "wf_add('a')"));
      step("call_prepared", () -> queryP(c, "SELECT " + P + "wf_add(?)", "b"));
      step("read_back", () -> query(c, "SELECT id, note FROM " + P + "wf ORDER BY id"));
    }
  }

  static void writeFunctionReplicated() throws Exception {
    // The function and its table were created by the harness and replayed by the replicas
    // (tests/differential/setup.sql): only the write inside SELECT is at stake.
    settle();  // nothing written lately: a consistency mode may send the call to a replica
    try (Connection c = connect("prepareThreshold", "1")) {
      step("call_statement", () -> query(c, "SELECT " + P + "wfr_add('a')"));
      step("call_prepared", () -> queryP(c, "SELECT " + P + "wfr_add(?)", "b"));
      step("call_prepared_again", () -> queryP(c, "SELECT " + P + "wfr_add(?)", "c"));
    }
  }
}
