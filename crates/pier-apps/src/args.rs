//! Command-line options shared by the apps.

use std::net::SocketAddr;
use std::time::Duration;

/// Options for an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The port to listen on (default 8080, the book's; 5353 for `udp-echo`).
    pub port: u16,
    /// `--version vN`: which of the book's kubia images to behave like.
    pub version: Option<String>,
    /// `udp-echo --client HOST:PORT ...`: query a server instead of being one.
    pub client: Option<UdpClient>,
}

/// What `udp-echo --client` sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpClient {
    /// `--client IP:PORT`: where to send.
    pub server: SocketAddr,
    /// `--source-port N`: the local port to send from (0, the default, lets the kernel pick).
    pub source_port: u16,
    /// `--count K`: how many datagrams to send, one after the other (default 1).
    pub count: u32,
    /// `--timeout-ms T`: how long to wait for each answer (default 2000).
    pub timeout: Duration,
    /// `--message M`: the payload; each datagram carries `M-<n>` (default `hi`).
    pub message: String,
}

/// The flags only `udp-echo --client` takes.
const CLIENT_FLAGS: [&str; 4] = ["--source-port", "--count", "--timeout-ms", "--message"];

/// Parses `--port P`, `--version V`, and for `udp-echo` the client's flags (also `--flag=value`).
/// Other words are ignored with a warning, as the book's Node.js apps ignore their arguments.
pub(crate) fn parse(app: &str, args: &[String]) -> Result<Options, String> {
    let udp = app == "udp-echo";
    let mut options = Options { port: if udp { 5353 } else { 8080 }, version: None, client: None };
    let mut server = None;
    let mut source_port = 0;
    let mut count = 1;
    let mut timeout_ms = 2000;
    let mut message = "hi".to_string();
    let mut client_flag = None;
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
            "--port" => options.port = number(flag, &value(flag)?)?,
            "--version" if !udp => options.version = Some(value(flag)?),
            "--client" if udp => {
                let text = value(flag)?;
                server =
                    Some(text.parse().map_err(|_| format!("--client {text:?} is not an IP:PORT address"))?);
            }
            "--source-port" if udp => source_port = number(flag, &value(flag)?)?,
            "--count" if udp => count = number(flag, &value(flag)?)?,
            "--timeout-ms" if udp => timeout_ms = number(flag, &value(flag)?)?,
            "--message" if udp => message = value(flag)?,
            _ => eprintln!("{app}: ignoring argument {word:?}"),
        }
        if CLIENT_FLAGS.contains(&flag) && udp {
            client_flag.get_or_insert(flag.to_string());
        }
    }
    match (server, client_flag) {
        (Some(server), _) => {
            options.client = Some(UdpClient {
                server,
                source_port,
                count,
                timeout: Duration::from_millis(timeout_ms),
                message,
            });
        }
        (None, Some(flag)) => return Err(format!("{flag} needs --client")),
        (None, None) => {}
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    let what = if flag.ends_with("port") { "a port number" } else { "a number" };
    text.parse().map_err(|_| format!("{flag} {text:?} is not {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_flags() {
        assert_eq!(parse("kubia", &[]).unwrap(), Options { port: 8080, version: None, client: None });
        assert_eq!(
            parse("kubia", &words("--version v2 --port=9000 extra")).unwrap(),
            Options { port: 9000, version: Some("v2".into()), client: None }
        );
        assert_eq!(
            parse("kubia", &words("--port nope")).unwrap_err(),
            "--port \"nope\" is not a port number"
        );
        assert_eq!(parse("kubia", &words("--version")).unwrap_err(), "--version needs a value");
        // kubia knows nothing of the UDP client.
        assert_eq!(parse("kubia", &words("--client 10.0.0.1:53")).unwrap().client, None);
    }

    #[test]
    fn parses_udp_echo_flags() {
        assert_eq!(parse("udp-echo", &[]).unwrap(), Options { port: 5353, version: None, client: None });
        assert_eq!(parse("udp-echo", &words("--port 53")).unwrap().port, 53);
        assert_eq!(
            parse(
                "udp-echo",
                &words(
                    "--client 10.96.0.10:53 --source-port=40000 --count 3 --timeout-ms 500 --message ping"
                )
            )
            .unwrap()
            .client,
            Some(UdpClient {
                server: "10.96.0.10:53".parse().unwrap(),
                source_port: 40000,
                count: 3,
                timeout: Duration::from_millis(500),
                message: "ping".into(),
            })
        );
        assert_eq!(
            parse("udp-echo", &words("--client 127.0.0.1:7")).unwrap().client,
            Some(UdpClient {
                server: "127.0.0.1:7".parse().unwrap(),
                source_port: 0,
                count: 1,
                timeout: Duration::from_millis(2000),
                message: "hi".into(),
            })
        );
        assert_eq!(
            parse("udp-echo", &words("--client example:53")).unwrap_err(),
            "--client \"example:53\" is not an IP:PORT address"
        );
        assert_eq!(parse("udp-echo", &words("--count 3")).unwrap_err(), "--count needs --client");
        assert_eq!(
            parse("udp-echo", &words("--client 127.0.0.1:7 --count many")).unwrap_err(),
            "--count \"many\" is not a number"
        );
    }
}
