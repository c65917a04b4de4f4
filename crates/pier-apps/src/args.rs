//! Command-line options shared by the apps.

/// Options for an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The port to listen on (default 8080, the book's).
    pub port: u16,
    /// `--version vN`: which of the book's kubia images to behave like.
    pub version: Option<String>,
}

/// Parses `--port P`, `--version V` (also `--flag=value`). Other words are ignored with a warning, as the
/// book's Node.js apps ignore their arguments.
pub(crate) fn parse(app: &str, args: &[String]) -> Result<Options, String> {
    let mut options = Options { port: 8080, version: None };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (word.as_str(), None),
        };
        let mut value = |name: &str| match &inline {
            Some(v) => Ok(v.clone()),
            None => words.next().cloned().ok_or_else(|| format!("{name} needs a value")),
        };
        match flag {
            "--port" => {
                let text = value("--port")?;
                options.port = text.parse().map_err(|_| format!("--port {text:?} is not a port number"))?;
            }
            "--version" => options.version = Some(value("--version")?),
            _ => eprintln!("{app}: ignoring argument {word:?}"),
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_flags() {
        assert_eq!(parse("kubia", &[]).unwrap(), Options { port: 8080, version: None });
        assert_eq!(
            parse("kubia", &words("--version v2 --port=9000 extra")).unwrap(),
            Options { port: 9000, version: Some("v2".into()) }
        );
        assert_eq!(
            parse("kubia", &words("--port nope")).unwrap_err(),
            "--port \"nope\" is not a port number"
        );
        assert_eq!(parse("kubia", &words("--version")).unwrap_err(), "--version needs a value");
    }
}
