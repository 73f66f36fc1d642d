// Unit tests for routing/sql_lexer: token kinds and spans for every quoting form, comment
// nesting, parenthesis depth and partners, and the inputs it must refuse.
#include "routing/sql_lexer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pgswitch::routing {
namespace {

using TK = TokenKind;

std::vector<std::pair<TK, std::string>> lex(std::string_view sql) {
  std::vector<Token> toks;
  EXPECT_TRUE(lexSql(sql, toks)) << sql;
  std::vector<std::pair<TK, std::string>> out;
  for (const Token& t : toks) out.emplace_back(t.kind, std::string(sql.substr(t.pos, t.len)));
  return out;
}

bool lexes(std::string_view sql) {
  std::vector<Token> toks;
  return lexSql(sql, toks);
}

TEST(SqlLexer, QuotingForms) {
  using V = std::vector<std::pair<TK, std::string>>;
  EXPECT_EQ(lex("'a''b'"), (V{{TK::String, "'a''b'"}}));
  EXPECT_EQ(lex(R"(E'a\'b' e'\\')"), (V{{TK::String, R"(E'a\'b')"}, {TK::String, R"(e'\\')"}}));
  EXPECT_EQ(lex(R"('a\' x)"), (V{{TK::String, R"('a\')"}, {TK::Word, "x"}}));
  EXPECT_EQ(lex("B'01' X'ff' N'n'"),
            (V{{TK::String, "B'01'"}, {TK::String, "X'ff'"}, {TK::String, "N'n'"}}));
  EXPECT_EQ(lex(R"(U&'\0061' U&"\0061")"),
            (V{{TK::String, R"(U&'\0061')"}, {TK::QuotedIdent, R"(U&"\0061")"}}));
  EXPECT_EQ(lex(R"("a""b" "x")"), (V{{TK::QuotedIdent, R"("a""b")"}, {TK::QuotedIdent, R"("x")"}}));
}

TEST(SqlLexer, PrefixLettersOnlyWhenAlone) {
  using V = std::vector<std::pair<TK, std::string>>;
  EXPECT_EQ(lex("xe'a'"), (V{{TK::Word, "xe"}, {TK::String, "'a'"}}));
  EXPECT_EQ(lex("u & 'a'"), (V{{TK::Word, "u"}, {TK::Operator, "&"}, {TK::String, "'a'"}}));
}

TEST(SqlLexer, DollarQuotesAndParams) {
  using V = std::vector<std::pair<TK, std::string>>;
  EXPECT_EQ(lex("$$a$b$$ $t$ $$ $t$ $1 $23"), (V{{TK::String, "$$a$b$$"},
                                                 {TK::String, "$t$ $$ $t$"},
                                                 {TK::Param, "$1"},
                                                 {TK::Param, "$23"}}));
  EXPECT_EQ(lex("a$$b"), (V{{TK::Word, "a$$b"}}));  // '$' continues an identifier
  EXPECT_FALSE(lexes("$"));
  EXPECT_FALSE(lexes("$a"));
  EXPECT_FALSE(lexes("$a$ never closed"));
}

TEST(SqlLexer, CommentsNestAndStopOperators) {
  using V = std::vector<std::pair<TK, std::string>>;
  EXPECT_EQ(lex("a /* x /* y */ z */ b -- c\nd"),
            (V{{TK::Word, "a"}, {TK::Word, "b"}, {TK::Word, "d"}}));
  EXPECT_EQ(lex("1+-- x\n2"), (V{{TK::Number, "1"}, {TK::Operator, "+"}, {TK::Number, "2"}}));
  EXPECT_EQ(lex("a*/*x*/b"), (V{{TK::Word, "a"}, {TK::Operator, "*"}, {TK::Word, "b"}}));
  EXPECT_FALSE(lexes("/* /* */"));
  EXPECT_EQ(skipSpaceAndComments(" /* a */ -- b\n x", 0), 15u);
  EXPECT_EQ(skipSpaceAndComments("/* a", 0), std::string_view::npos);
}

TEST(SqlLexer, NumbersAndPunctuation) {
  using V = std::vector<std::pair<TK, std::string>>;
  EXPECT_EQ(lex("1.5e-3 .5 x.y ::int [1:2];"), (V{{TK::Number, "1.5e-3"},
                                                  {TK::Number, ".5"},
                                                  {TK::Word, "x"},
                                                  {TK::Dot, "."},
                                                  {TK::Word, "y"},
                                                  {TK::Operator, "::"},
                                                  {TK::Word, "int"},
                                                  {TK::LBracket, "["},
                                                  {TK::Number, "1"},
                                                  {TK::Operator, ":"},
                                                  {TK::Number, "2"},
                                                  {TK::RBracket, "]"},
                                                  {TK::Semicolon, ";"}}));
}

TEST(SqlLexer, ParenthesisDepthAndPartners) {
  std::vector<Token> t;
  ASSERT_TRUE(lexSql("f(a, (b)) c", t));
  ASSERT_EQ(t.size(), 9u);
  EXPECT_EQ(t[1].kind, TK::LParen);
  EXPECT_EQ(t[1].match, 7u);
  EXPECT_EQ(t[7].match, 1u);
  EXPECT_EQ(t[4].match, 6u);
  EXPECT_EQ(t[5].depth, 2u);
  EXPECT_EQ(t[4].depth, 1u);
  EXPECT_EQ(t[8].depth, 0u);
  EXPECT_FALSE(lexes("(()"));
  EXPECT_FALSE(lexes("())"));
}

TEST(SqlLexer, RefusesWhatPostgresRefuses) {
  for (std::string_view bad : {"'open", "\"open", "E'\\'", "\"\"", "U&\"\"", "\\d", "{"}) {
    EXPECT_FALSE(lexes(bad)) << bad;
  }
  EXPECT_TRUE(lexes("a ` b"));
  EXPECT_TRUE(lexes("SELECT \xc3\xa4\xc3\xb6"));  // high bytes are identifier characters
}

TEST(SqlLexer, EqualsLower) {
  EXPECT_TRUE(equalsLower("SeLeCt", "select"));
  EXPECT_FALSE(equalsLower("selects", "select"));
  EXPECT_FALSE(equalsLower("selecT", "selecx"));
}

}  // namespace
}  // namespace pgswitch::routing
