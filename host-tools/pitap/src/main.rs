//! `pitap`, the PiTap host tool.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pitap::config::CollectorConfig;
use pitap::networks::Networks;
use pitap::{collect, keygen};
use pitap_wire::format::LineFormat;

#[derive(Parser)]
#[command(
    name = "pitap",
    version,
    about = "PiTap host tools: collect and read flow records from taps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive flow batches from taps, acknowledge them, store them, print a line per flow.
    Collect(CollectArgs),
    /// Search the flow store: Graylog/Lucene syntax, e.g.
    /// 'from_internal:false AND action:ACCEPT'.
    Query {
        /// The query (empty: every flow). It may start with "-"
        /// ('-proto:UDP', a negation).
        #[arg(default_value = "", allow_hyphen_values = true)]
        query: String,
        #[command(flatten)]
        window: Window,
        /// Quick values: the most frequent values of FIELD with counts and percentages.
        #[arg(long, value_name = "FIELD")]
        top: Option<String>,
        /// Sum this numeric field (with --by).
        #[arg(long, value_name = "FIELD")]
        sum: Option<String>,
        /// Group --sum by this field.
        #[arg(long, value_name = "FIELD")]
        by: Option<String>,
        /// Rows of --top / --sum.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        // json: JSON lines (the record's fields and the enrichment); with
        // --count, --top or --sum one JSON object.
        #[command(flatten)]
        format: Output,
        /// Only the number of matching flows.
        #[arg(long)]
        count: bool,
    },
    /// Built-in analyses: inbound to internal services, bytes leaving
    /// sensitive groups, refused connections and scans, beaconing, new devices.
    Report {
        #[command(flatten)]
        window: Window,
        /// One analysis: inbound, exfil, refused, beacons, devices.
        #[arg(long)]
        only: Option<String>,
        /// Rows per analysis.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        // json: one object per analysis.
        #[command(flatten)]
        format: Output,
    },
    /// The files that crossed the flows (HTTP bodies): hashes, size, type,
    /// URL and the flow, newest first. `pitap query 'file_sha256:HEX'` gives
    /// the flows.
    Files {
        /// A SHA-256, SHA-1 or MD5 in hex (told apart by length).
        hash: Option<String>,
        /// Files whose URL contains this (any case).
        #[arg(long)]
        url: Option<String>,
        /// Files of this media type (image/png).
        #[arg(long)]
        mime: Option<String>,
        #[command(flatten)]
        window: Window,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        // json: JSON lines.
        #[command(flatten)]
        format: Output,
    },
    /// Packets of flows from a tap's packet ring, as pcapng, through the
    /// running collector (pitap collect with the same store).
    Pcap {
        /// The tap to ask.
        #[arg(long)]
        tap: String,
        /// A flow: "PROTO SRC:PORT DST:PORT" (repeatable).
        #[arg(long, conflicts_with = "query")]
        flow: Vec<String>,
        /// The flows a query finds in the window (16 at most).
        #[arg(long)]
        query: Option<String>,
        #[command(flatten)]
        window: Window,
        /// The pcapng file to write.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
        /// Keep every packet of the flows from now on, past the cut-off.
        #[arg(long)]
        flag: bool,
    },
    /// The devices (MACs) seen: hostname from DHCP, last address, first and last seen.
    Devices {
        #[command(flatten)]
        window: Window,
        // json: JSON lines.
        #[command(flatten)]
        format: Output,
    },
    /// The web UI over the flow store: overview, search, reports, devices.
    Serve {
        /// collector.toml: store.path, [web], [networks], [report], alert files.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The flow store; default store.path from --config, or pitap-flows.db.
        #[arg(long)]
        store: Option<PathBuf>,
        /// Address to listen on (default web.listen, or 127.0.0.1:8080). Any
        /// address but loopback needs [web] password_hash.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Read a password on stdin; print the [web] lines for collector.toml.
    WebPassword,
    /// The SD card image.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Offer a tap a new boot partition image (signed with update.key)
    /// through the running collector, list each tap's version and update
    /// state, or withdraw an offer.
    Update {
        /// The tap to update (or, with --cancel, whose offer to withdraw).
        #[arg(long, required_unless_present = "list")]
        tap: Option<String>,
        /// The boot partition image (image/build.sh --boot-partition makes one).
        #[arg(required_unless_present_any = ["list", "cancel"])]
        image: Option<PathBuf>,
        /// A name for the image in listings (default: "sha256-" and the
        /// first 12 hex digits of its SHA-256; a tap knows an image by its
        /// bytes, not by this name).
        #[arg(long)]
        version: Option<String>,
        /// The update key's file (pitap keygen --update).
        #[arg(long, default_value = "update.key")]
        key: PathBuf,
        /// collector.toml, for store.path.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The flow store the collector runs with; default store.path from
        /// --config, or pitap-flows.db.
        #[arg(long)]
        store: Option<PathBuf>,
        /// Wait up to this many seconds for the tap to run it (or refuse it).
        #[arg(long)]
        wait: Option<f64>,
        /// Each tap's version and update state, and every offer.
        #[arg(long, conflicts_with_all = ["image", "cancel"])]
        list: bool,
        /// Withdraw the tap's offer (a transfer under way stops).
        #[arg(long, conflicts_with = "image")]
        cancel: bool,
    },
    /// Make a key for a tap: a snippet for its pitap.toml and one for collector.toml.
    Keygen {
        #[arg(long, required_unless_present = "update")]
        tap_id: Option<String>,
        /// Make the key that signs update images (update.key) instead of a
        /// tap's uplink key.
        #[arg(long, conflicts_with = "tap_id")]
        update: bool,
        /// The collector's address as the tap will reach it.
        #[arg(long, default_value = "192.0.2.10:4739")]
        collector: String,
        /// Write ID.tap.toml and ID.collector.toml here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Replace key files that are there already.
        #[arg(long)]
        force: bool,
    },
    /// Print the shell completion script: pitap completions bash >
    /// /etc/bash_completion.d/pitap.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (pitap.1 and one per subcommand) into DIR.
    Man {
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct CollectArgs {
    /// collector.toml: listen address, output, state file, tap keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:4739 or [::]:4739.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Line format: text, json, Zeek's conn.log as zeek (TSV) or
    /// zeek-json, or ecs (Elastic Common Schema documents).
    #[arg(long)]
    format: Option<LineFormat>,
    /// Append lines to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Remember what arrived across restarts (no batch printed twice).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Accept plaintext datagrams from any tap id: for tests only.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Exit once a tap sent its final batch and everything before it.
    #[arg(long)]
    until_final: bool,
    /// Exit after this many seconds without a datagram.
    #[arg(long, value_name = "SECS")]
    idle_exit: Option<f64>,
    /// Print every tap's status line this often (seconds).
    #[arg(long, value_name = "SECS")]
    status_every: Option<f64>,
    /// The flow store (SQLite); default store.path or pitap-flows.db.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Only print lines, store nothing.
    #[arg(long, conflicts_with = "store")]
    no_store: bool,
    /// Serve the web UI over the store from this process too, on ADDR.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_store")]
    web: Option<SocketAddr>,
    /// Check the configuration (and these options) and exit: "ok" and a
    /// summary, or the key and the reason (exit 2). Nothing is opened.
    #[arg(long)]
    check_config: bool,
}

/// How the reading commands print: `--format text|json`, the one spelling
/// `collect --format` and `pitapd --format` share. `--json` stays, hidden,
/// for the scripts written before.
#[derive(clap::Args)]
struct Output {
    /// text (default) or json.
    #[arg(long, value_name = "text|json")]
    format: Option<ReadFormat>,
    #[arg(long, hide = true, conflicts_with = "format")]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum ReadFormat {
    Text,
    Json,
}

impl Output {
    fn json(&self) -> bool {
        self.json || self.format == Some(ReadFormat::Json)
    }
}

/// Where the flows are and which time window.
#[derive(clap::Args)]
struct Window {
    /// collector.toml: store.path, [report] sensitive, and the [networks]
    /// that from_internal, to_internal, src_group and dst_group follow
    /// (default: the ones the collector last ran with).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The flow store; default store.path from --config, or pitap-flows.db.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Flows that started after this: 15m, 1h, 7d, or 2026-11-25[T10:00:00Z].
    #[arg(long, default_value = "1d")]
    since: String,
    /// ...and before this (default: now).
    #[arg(long)]
    until: Option<String>,
}

struct UpdateArgs {
    tap: Option<String>,
    image: Option<PathBuf>,
    version: Option<String>,
    key: PathBuf,
    config: Option<PathBuf>,
    store: Option<PathBuf>,
    wait: Option<f64>,
    list: bool,
    cancel: bool,
}

/// `pitap update`: offer, list or cancel.
fn update_command(a: UpdateArgs) -> Result<(), String> {
    let UpdateArgs {
        tap,
        image,
        version,
        key,
        config,
        store,
        wait,
        list,
        cancel,
    } = a;
    let store = match (store, config) {
        (Some(s), _) => s,
        (None, Some(c)) => CollectorConfig::load(&c)?
            .store
            .path
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE)),
        (None, None) => PathBuf::from(DEFAULT_STORE),
    };
    let mut out = std::io::stdout().lock();
    match (list, cancel, tap, image, version) {
        (true, ..) => pitap::update_cmd::list(&store, &mut out),
        (_, true, Some(tap), ..) => pitap::update_cmd::cancel(&store, &tap).map(|n| {
            println!("{n} offer(s) to tap {tap} withdrawn");
        }),
        (_, _, Some(tap), Some(image), version) => {
            let wait = match wait {
                Some(w) if w > 0.0 && w.is_finite() => Some(std::time::Duration::from_secs_f64(w)),
                Some(w) => return Err(format!("--wait: expected seconds, got {w}")),
                None => None,
            };
            pitap::update_cmd::offer(
                &pitap::update_cmd::Offer {
                    store,
                    tap,
                    image,
                    version,
                    key,
                    wait,
                },
                &mut out,
            )
            .map(|_| ())
        }
        _ => Err("--tap and IMAGE are needed (or --list, or --cancel --tap)".into()),
    }
}

const DEFAULT_STORE: &str = "pitap-flows.db";

/// A window resolved: the store, the times, the config and its networks
/// (None without --config).
struct Resolved {
    store: PathBuf,
    since_ms: u64,
    until_ms: u64,
    config: CollectorConfig,
    networks: Option<Networks>,
}

impl Window {
    fn resolve(&self) -> Result<Resolved, String> {
        let (config, networks) = match &self.config {
            Some(path) => {
                let config = CollectorConfig::load(path)?;
                let networks = config.networks()?;
                (config, Some(networks))
            }
            None => (CollectorConfig::default(), None),
        };
        let store = self
            .store
            .clone()
            .or_else(|| config.store.path.as_ref().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE));
        let now = pitap::search::now_ms();
        let since =
            pitap::search::parse_time(&self.since, now).map_err(|e| format!("--since: {e}"))?;
        let until = match &self.until {
            Some(u) => pitap::search::parse_time(u, now).map_err(|e| format!("--until: {e}"))?,
            None => u64::MAX,
        };
        if since >= until {
            return Err(format!(
                "--since {} is not before --until {}: the window holds nothing",
                self.since,
                self.until.as_deref().unwrap_or("now")
            ));
        }
        Ok(Resolved {
            store,
            since_ms: since,
            until_ms: until,
            config,
            networks,
        })
    }
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Write an image to an SD card or a file and bake the tap's identity into pitap.toml.
    Write {
        /// The image (image/out/pitap-VERSION-arm64.img).
        #[arg(long)]
        image: PathBuf,
        /// The SD card (/dev/sdX, /dev/mmcblkN) or a file.
        #[arg(long)]
        target: PathBuf,
        #[arg(long)]
        tap_id: String,
        /// The collector as the tap will reach it.
        #[arg(long)]
        collector: Option<String>,
        /// The tap's key (from pitap keygen).
        #[arg(long)]
        key: Option<String>,
        /// More pitap.toml settings (TOML), appended as they are.
        #[arg(long)]
        extra: Option<PathBuf>,
        /// Write a block device without asking to type its name.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `write` with stdout, locked and buffered, as its output.
fn to_stdout(
    write: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> Result<(), String>,
) -> Result<(), String> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write(&mut out)
}

fn seconds(s: Option<f64>) -> Option<Duration> {
    s.filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

fn collect_options(args: CollectArgs, check: bool) -> Result<collect::Options, String> {
    let CollectArgs {
        config,
        listen,
        format,
        output,
        state,
        insecure_plaintext,
        until_final,
        idle_exit,
        status_every,
        store,
        no_store,
        web,
        check_config: _,
    } = args;
    let mut file = match &config {
        Some(path) => CollectorConfig::load(path)?,
        None => CollectorConfig::default(),
    };
    let c = &file.collector;
    let listen = match (listen, &c.listen) {
        (Some(l), _) => l,
        (None, Some(l)) => l
            .parse()
            .map_err(|_| "collector.listen: not ADDRESS:PORT")?,
        (None, None) => return Err("give --listen ADDR (or collector.listen in --config)".into()),
    };
    let format = match (format, &c.format) {
        (Some(f), _) => f,
        (None, Some(f)) => f.parse()?,
        (None, None) => LineFormat::Text,
    };
    let store = match (store, no_store, file.store.enabled) {
        (_, true, _) | (None, false, Some(false)) => None,
        (Some(path), false, _) => Some(path),
        (None, false, _) => Some(
            file.store
                .path
                .as_ref()
                .map_or_else(|| PathBuf::from(DEFAULT_STORE), PathBuf::from),
        ),
    };
    if let (Some(addr), Some(path)) = (web, &store) {
        let opts = file.web(path.clone(), Some(file.networks()?), Some(addr))?;
        // A check only checks the web settings; it serves nothing.
        if !check {
            let bound = pitap::web::start(opts)?;
            eprintln!("pitap: serving the web UI on http://{bound}/");
        }
    }
    Ok(collect::Options {
        store,
        retention: file.retention(),
        networks: file.networks()?,
        alerts: file.alerts.clone(),
        exports: std::mem::take(&mut file.export),
        listen,
        format,
        output: output.or_else(|| c.output.as_ref().map(PathBuf::from)),
        tls_ca: file.tls.ca_file.as_ref().map(PathBuf::from),
        state: state.or_else(|| c.state.as_ref().map(PathBuf::from)),
        keys: file.keys()?,
        allow_plaintext: insecure_plaintext || c.insecure_plaintext,
        until_final,
        idle_exit: seconds(idle_exit),
        status_interval: seconds(status_every).or(c.status_interval_s.map(Duration::from_secs)),
    })
}

/// pitap.1 and pitap-SUBCOMMAND.1 from the clap definitions.
fn write_man_pages(dir: &std::path::Path) -> Result<(), String> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = vec![("pitap".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("pitap-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut out)
            .map_err(|e| format!("{name}: {e}"))?;
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "pitap", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out_dir } => write_man_pages(&out_dir),
        Command::Collect(args) if args.check_config => {
            let config = args.config.clone();
            return match collect_options(args, true).and_then(|o| collect::check(&o)) {
                Ok(summary) => {
                    println!("ok: {summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let file = config.map_or_else(|| "options".into(), |p| p.display().to_string());
                    eprintln!("pitap: {file}: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Collect(args) => collect_options(args, false).and_then(collect::run),
        Command::Image {
            command:
                ImageCommand::Write {
                    image,
                    target,
                    tap_id,
                    collector,
                    key,
                    extra,
                    yes,
                },
        } => pitap::image_write::run(&pitap::image_write::Options {
            image,
            target,
            tap_id,
            collector,
            key,
            extra,
            yes,
        }),
        Command::Update {
            tap,
            image,
            version,
            key,
            config,
            store,
            wait,
            list,
            cancel,
        } => update_command(UpdateArgs {
            tap,
            image,
            version,
            key,
            config,
            store,
            wait,
            list,
            cancel,
        }),
        Command::Keygen {
            tap_id,
            update,
            collector,
            out_dir,
            force,
        } => match tap_id {
            Some(tap_id) if !update => keygen::run(&tap_id, &collector, out_dir.as_deref(), force),
            _ => keygen::run_update(out_dir.as_deref(), force),
        },
        Command::Serve {
            config,
            store,
            listen,
        } => Window {
            config,
            store,
            since: "0".into(),
            until: None,
        }
        .resolve()
        .and_then(|w| w.config.web(w.store, w.networks, listen))
        .and_then(pitap::web::serve),
        Command::WebPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading the password: {e}"))
                .and_then(|_| {
                    let password = line.trim_end_matches(['\r', '\n']);
                    if password.len() < 8 {
                        return Err("a password of at least 8 characters".into());
                    }
                    pitap::web::hash_password(password)
                })
                .map(|h| println!("[web]\npassword_hash = \"{h}\""))
        }
        Command::Query {
            query,
            window,
            top,
            sum,
            by,
            limit,
            format,
            count,
        } => window.resolve().and_then(|w| {
            let json = format.json();
            let output = pitap::search::output_from_args(
                json,
                count,
                top.as_deref(),
                sum.as_deref(),
                by.as_deref(),
                limit,
            )?;
            to_stdout(|out| {
                pitap::search::run(
                    &pitap::search::Options {
                        store: w.store,
                        query,
                        since_ms: w.since_ms,
                        until_ms: w.until_ms,
                        output,
                        networks: w.networks,
                        json,
                    },
                    out,
                )
                .map(|_| ())
            })
        }),
        Command::Files {
            hash,
            url,
            mime,
            window,
            limit,
            format,
        } => window.resolve().and_then(|w| {
            let json = format.json();
            let filter = pitap::store::FileFilter {
                hash,
                url,
                mime,
                since_ms: w.since_ms,
                until_ms: w.until_ms,
                limit,
            };
            to_stdout(|out| pitap::files::run(&w.store, &filter, json, out).map(|_| ()))
        }),
        Command::Pcap {
            tap,
            flow,
            query,
            window,
            output,
            timeout,
            flag,
        } => window.resolve().and_then(|w| {
            use pitap::pcap_fetch::{parse_flow, Selection};
            let selection = match (query, flow.is_empty()) {
                (Some(q), _) => Selection::Query(q),
                (None, false) => Selection::Flows(
                    flow.iter()
                        .map(|f| parse_flow(f))
                        .collect::<Result<_, _>>()?,
                ),
                (None, true) => Selection::Window,
            };
            if !(timeout > 0.0 && timeout.is_finite()) {
                return Err(format!("--timeout: expected seconds, got {timeout}"));
            }
            pitap::pcap_fetch::run(&pitap::pcap_fetch::Options {
                store: w.store,
                tap,
                selection,
                since_ms: w.since_ms,
                until_ms: w.until_ms,
                output,
                timeout: std::time::Duration::from_secs_f64(timeout),
                flag,
                networks: w.networks,
            })
            .map(|_| ())
        }),
        Command::Devices { window, format } => window.resolve().and_then(|w| {
            to_stdout(|out| pitap::devices::run(&w.store, format.json(), out).map(|_| ()))
        }),
        Command::Report {
            window,
            only,
            limit,
            format,
        } => window.resolve().and_then(|w| {
            let json = format.json();
            to_stdout(|out| {
                pitap::report::run(
                    &pitap::report::Options {
                        store: w.store,
                        since_ms: w.since_ms,
                        until_ms: w.until_ms,
                        sensitive: w.config.report.sensitive.clone(),
                        only,
                        limit,
                        thresholds: w.config.report.thresholds()?,
                        json,
                        networks: w.networks,
                    },
                    out,
                )
                .map(|_| ())
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pitap: {e}");
            ExitCode::FAILURE
        }
    }
}
