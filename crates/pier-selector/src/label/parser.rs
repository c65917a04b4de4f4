//! The label selector lexer and recursive-descent parser, token for token as upstream's
//! `labels.Parse`, so that errors name the same token with the same words.

use super::{requirement_errors, Expected, LabelSelectorError, Operator, Requirement};
use crate::validation::{go_quote, label_key_errors, InvalidField};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn symbol_token(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the selector into tokens, ending with `EndOfString`.
fn lex(s: &str) -> Vec<(Token, &str)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_whitespace(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Token::EndOfString, ""));
            return out;
        }
        let start = pos;
        if is_special(b[pos]) {
            // Longest run of special characters that is still a token ("!=" over "!").
            // Every single special character is a token, so this always yields one.
            let mut last = None;
            while pos < b.len() && is_special(b[pos]) {
                match symbol_token(&s[start..pos + 1]) {
                    Some(t) => {
                        last = Some((t, pos + 1));
                        pos += 1;
                    }
                    None if last.is_some() => break,
                    None => pos += 1,
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, &s[start..end]));
                }
                // Unreachable with the current symbol table; treated as an identifier
                // rather than panicking.
                None => out.push((Token::Identifier, &s[start..pos])),
            }
        } else {
            while pos < b.len() && !is_special(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            let tok = match lit {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            out.push((tok, lit));
        }
    }
}

/// Where the parser is: `in` and `notin` are operators after a key, but plain
/// identifiers where a key or value is expected (`in in (in)` is valid).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    items: Vec<(Token, &'a str)>,
    pos: usize,
}

fn unexpected(found: &str, expected: Expected, in_requirement: bool) -> LabelSelectorError {
    LabelSelectorError::UnexpectedToken { found: found.to_string(), expected, in_requirement }
}

fn in_req(found: &str, expected: Expected) -> LabelSelectorError {
    unexpected(found, expected, true)
}

impl<'a> Parser<'a> {
    fn item(&self, context: Context) -> (Token, &'a str) {
        // `lex` always ends with EndOfString and the parser never consumes past it.
        let (tok, lit) = self.items.get(self.pos).copied().unwrap_or((Token::EndOfString, ""));
        match (context, tok) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        self.item(context)
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.item(context);
        self.pos = (self.pos + 1).min(self.items.len());
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, LabelSelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    requirements.push(self.parse_requirement()?);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(unexpected(l2, Expected::IdentifierAfterComma, false));
                            }
                        }
                        _ => return Err(unexpected(l, Expected::CommaOrEnd, false)),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => return Err(unexpected(lit, Expected::RequirementStart, false)),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, LabelSelectorError> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return new_requirement(key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, op, values)
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows it.
    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), LabelSelectorError> {
        let (mut tok, mut lit) = self.consume(Context::Values);
        let negated = tok == Token::DoesNotExist;
        if negated {
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(in_req(lit, Expected::Identifier));
        }
        let errs = label_key_errors(lit);
        if !errs.is_empty() {
            // Upstream validates the key here with a nil field path, printed `<nil>`.
            return Err(LabelSelectorError::Invalid {
                errors: vec![InvalidField {
                    field: "<nil>".to_string(),
                    value: go_quote(lit),
                    detail: errs.join("; "),
                }],
                in_requirement: true,
            });
        }
        if negated {
            return Ok((lit, Some(Operator::DoesNotExist)));
        }
        let (next, _) = self.lookahead(Context::Values);
        if next == Token::EndOfString || next == Token::Comma {
            return Ok((lit, Some(Operator::Exists)));
        }
        Ok((lit, None))
    }

    fn parse_operator(&mut self) -> Result<Operator, LabelSelectorError> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(in_req(lit, Expected::Operator)),
        })
    }

    /// `(a,b,...)`; the result is sorted and deduplicated, as upstream's string set.
    fn parse_values(&mut self) -> Result<Vec<String>, LabelSelectorError> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(in_req(lit, Expected::OpenParen));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(in_req(lit, Expected::CloseParen));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(in_req(lit, Expected::ValueSetStart)),
        }
    }

    /// A possibly empty list of possibly empty values: `(a,,b)` holds `""`.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, LabelSelectorError> {
        let mut set: Vec<String> = Vec::new();
        let insert = |set: &mut Vec<String>, v: &str| {
            if !set.iter().any(|x| x == v) {
                set.push(v.to_string());
            }
        };
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    insert(&mut set, lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => break,
                        _ => return Err(in_req(lit2, Expected::CommaOrCloseParen)),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        insert(&mut set, "");
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        insert(&mut set, "");
                        break;
                    }
                    if tok2 == Token::Comma {
                        insert(&mut set, "");
                    }
                }
                _ => return Err(in_req(lit, Expected::CommaOrIdentifier)),
            }
        }
        set.sort();
        Ok(set)
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, LabelSelectorError> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            return Ok(vec![lit.to_string()]);
        }
        Err(in_req(lit, Expected::Identifier))
    }
}

fn new_requirement(
    key: &str,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, LabelSelectorError> {
    let errors = requirement_errors(key, operator, &values);
    if !errors.is_empty() {
        return Err(LabelSelectorError::Invalid { errors, in_requirement: true });
    }
    Ok(Requirement { key: key.to_string(), operator, values })
}

/// Parses a selector string into its requirements, unsorted.
pub(super) fn parse(selector: &str) -> Result<Vec<Requirement>, LabelSelectorError> {
    Parser { items: lex(selector), pos: 0 }.parse()
}
