//! Command-line options of `cargo xtask bench failover -- …`.

use anyhow::{Result, bail};

pub const USAGE: &str = "\
usage: cargo xtask bench failover [-- OPTIONS]

  --trials N      trials per daemon of each VRRPv3 failover case (default 10; 2 with --quick)
  --v2-trials N   trials per daemon of the VRRPv2 advert_int 1 case
                  (default min(N, 4): each of its trials takes ~25 s per daemon)
  --quick         smoke run: fewer cases, shorter windows and floods (about 2 min)
  --load          the same with both cores kept busy by a CPU hog (normal priority)
  --seed S        seed of the random injection points (default: from the clock)
  --only LIST     comma-separated sections: failover,cpu,scale,flood (default: all)
  --configs LIST  comma-separated failover configs: v2-1,v3-0.1,v3-0.01 (default: all;
                  --quick runs v3-0.01 and v3-0.1)
  --floods LIST   comma-separated junk kinds: wrong-vrid,bad-checksum,bad-ttl,bad-auth,truncated
                  (default: all)
  --rates LIST    comma-separated flood rates in frames/s (default: 200,50000; at most 100000)
  --flood-secs S  length of each junk flood (default 10; 1 with --quick)
  --xvrrpd-arg A  an extra argument for every xvrrpd router (repeatable), e.g.
                  --xvrrpd-arg=--no-ebpf or --xvrrpd-arg=--rt-priority=0 to compare
  --cpu-secs S    length of each steady-state CPU window (default 10; 3 with --quick)
  --cpu-cases L   comma-separated steady-state CPU cases INSTANCES@ADVERT_INT (VRRPv3,
                  seconds in 0.01 steps; default 1@0.01,100@0.01,1000@1,1000@0.1, also
                  with --quick, which measures one window per daemon instead of two).
                  Up to 250 instances go on eth0; more on VLANs eth0.10, eth0.11, …
                  (250 VRIDs each)
  --scale-cases L comma-separated mass failover cases INSTANCES@ADVERT_INT (as --cpu-cases;
                  default 1000@0.1): every instance fails over together and back
  --help          this text

Needs root. The xvrrpd binary is $XVRRPD_BIN (xtask builds and sets the release
binary) or target/debug/xvrrpd; keepalived is /usr/sbin/keepalived.";

/// A steady-state CPU case: `instances` VRRPv3 instances at `advert_int`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuCase {
    pub instances: usize,
    pub advert_int: std::time::Duration,
}

impl CpuCase {
    pub const DEFAULT: [CpuCase; 4] = [
        CpuCase::new(1, 10),
        CpuCase::new(100, 10),
        CpuCase::new(1000, 1000),
        CpuCase::new(1000, 100),
    ];

    pub const fn new(instances: usize, advert_ms: u64) -> CpuCase {
        CpuCase {
            instances,
            advert_int: std::time::Duration::from_millis(advert_ms),
        }
    }

    /// `1000@0.1`.
    pub fn name(self) -> String {
        format!(
            "{}@{}",
            self.instances,
            xvrrpd_tests::kconf::secs_text(self.advert_int)
        )
    }

    /// `1000 instances at advert_int 0.1`.
    pub fn label(self) -> String {
        format!(
            "{} instance{} at {}",
            self.instances,
            if self.instances == 1 { "" } else { "s" },
            xvrrpd_tests::kconf::secs_text(self.advert_int)
        )
    }

    /// `option`'s comma-separated list of cases, at least one.
    fn parse_list(option: &str, list: &str) -> Result<Vec<CpuCase>> {
        let cases = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| CpuCase::parse(option, s))
            .collect::<Result<Vec<_>>>()?;
        if cases.is_empty() {
            bail!("{option}: no case given");
        }
        Ok(cases)
    }

    fn parse(option: &str, s: &str) -> Result<CpuCase> {
        let Some((n, secs)) = s.split_once('@') else {
            bail!("{option}: {s:?} is not INSTANCES@ADVERT_INT, e.g. 1000@0.1");
        };
        let max = xvrrpd_tests::scale::MAX_INSTANCES;
        let instances = match n.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => bail!("{option}: {n:?} instances: a number in 1..={max}"),
        };
        // VRRPv3 carries centiseconds: 0.01 … 40.95 s.
        let v = match secs.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (0.01..=40.95).contains(&v) => v,
            _ => bail!("{option}: advert_int {secs:?}: seconds in [0.01, 40.95]"),
        };
        let cs = (v * 100.0).round();
        if (v * 100.0 - cs).abs() > 1e-6 {
            bail!("{option}: advert_int {secs:?}: VRRPv3 counts in steps of 0.01 s");
        }
        Ok(CpuCase::new(instances, cs as u64 * 10))
    }
}

/// The failover configurations of the issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// VRRPv2, advert_int 1.
    V2s1,
    /// VRRPv3, advert_int 0.1.
    V3ms100,
    /// VRRPv3, advert_int 0.01.
    V3ms10,
}

impl Config {
    pub const ALL: [Config; 3] = [Config::V2s1, Config::V3ms100, Config::V3ms10];

    pub fn name(self) -> &'static str {
        match self {
            Config::V2s1 => "v2-1",
            Config::V3ms100 => "v3-0.1",
            Config::V3ms10 => "v3-0.01",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Config::V2s1 => "VRRPv2 advert_int 1",
            Config::V3ms100 => "VRRPv3 advert_int 0.1",
            Config::V3ms10 => "VRRPv3 advert_int 0.01",
        }
    }

    pub fn version(self) -> u8 {
        match self {
            Config::V2s1 => 2,
            _ => 3,
        }
    }

    pub fn interval(self) -> std::time::Duration {
        std::time::Duration::from_millis(match self {
            Config::V2s1 => 1000,
            Config::V3ms100 => 100,
            Config::V3ms10 => 10,
        })
    }

    fn parse(s: &str) -> Result<Config> {
        match s {
            "v2-1" => Ok(Config::V2s1),
            "v3-0.1" => Ok(Config::V3ms100),
            "v3-0.01" => Ok(Config::V3ms10),
            other => bail!("unknown config {other:?}: use v2-1, v3-0.1 or v3-0.01"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub trials: usize,
    pub v2_trials: usize,
    pub quick: bool,
    pub load: bool,
    pub seed: u64,
    pub failover: bool,
    pub cpu: bool,
    pub scale: bool,
    pub flood: bool,
    pub configs: Vec<Config>,
    pub flood_secs: f64,
    pub cpu_secs: f64,
    /// The steady-state CPU cases, in the order they run.
    pub cpu_cases: Vec<CpuCase>,
    /// The mass failover cases, in the order they run.
    pub scale_cases: Vec<CpuCase>,
    /// Junk kinds by name (None: all).
    pub floods: Option<Vec<String>>,
    pub rates: Vec<u64>,
    pub xvrrpd_args: Vec<String>,
}

impl Opts {
    /// Parses the arguments after the program name (`--bench`, which cargo
    /// adds for a harness-less bench, is accepted and ignored).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Opts>> {
        let mut trials = None;
        let mut v2_trials = None;
        let mut quick = false;
        let mut load = false;
        let mut seed = None;
        let mut only: Option<String> = None;
        let mut configs: Option<String> = None;
        let mut flood_secs = None;
        let mut cpu_secs = None;
        let mut cpu_cases = CpuCase::DEFAULT.to_vec();
        let mut scale_cases = vec![CpuCase::new(1000, 100)];
        let mut floods = None;
        let mut rates = vec![200, 50_000];
        let mut xvrrpd_args = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if let Some(v) = a.strip_prefix("--xvrrpd-arg=") {
                xvrrpd_args.push(v.to_string());
                continue;
            }
            let mut value = |name: &str| -> Result<String> {
                match it.next() {
                    Some(v) => Ok(v),
                    None => bail!("{name} needs a value\n\n{USAGE}"),
                }
            };
            match a.as_str() {
                "--bench" => {}
                "--help" | "-h" => return Ok(None),
                "--quick" => quick = true,
                "--load" => load = true,
                "--trials" => trials = Some(parse_num("--trials", &value("--trials")?)?),
                "--v2-trials" => {
                    v2_trials = Some(parse_num("--v2-trials", &value("--v2-trials")?)?)
                }
                "--seed" => seed = Some(parse_num("--seed", &value("--seed")?)?),
                "--only" => only = Some(value("--only")?),
                "--configs" => configs = Some(value("--configs")?),
                "--flood-secs" => {
                    flood_secs = Some(parse_secs("--flood-secs", &value("--flood-secs")?)?)
                }
                "--xvrrpd-arg" => xvrrpd_args.push(value("--xvrrpd-arg")?),
                "--floods" => {
                    floods = Some(
                        value("--floods")?
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    )
                }
                "--rates" => {
                    rates = value("--rates")?
                        .split(',')
                        .map(|r| parse_num("--rates", r.trim()))
                        .collect::<Result<Vec<_>>>()?;
                    if rates.iter().any(|r| *r == 0 || *r > 100_000) {
                        bail!("--rates: each rate in 1..=100000 frames/s");
                    }
                }
                "--cpu-secs" => cpu_secs = Some(parse_secs("--cpu-secs", &value("--cpu-secs")?)?),
                "--cpu-cases" => {
                    cpu_cases = CpuCase::parse_list("--cpu-cases", &value("--cpu-cases")?)?
                }
                "--scale-cases" => {
                    scale_cases = CpuCase::parse_list("--scale-cases", &value("--scale-cases")?)?
                }
                other => bail!("unknown option {other:?}\n\n{USAGE}"),
            }
        }
        let trials = trials.unwrap_or(if quick { 2 } else { 10 }) as usize;
        if trials == 0 {
            bail!("--trials must be at least 1");
        }
        let v2_trials = v2_trials.map(|n| n as usize).unwrap_or(trials.min(4));
        let (mut failover, mut cpu, mut scale, mut flood) = (true, true, true, true);
        if let Some(list) = only {
            (failover, cpu, scale, flood) = (false, false, false, false);
            for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match s {
                    "failover" => failover = true,
                    "cpu" => cpu = true,
                    "scale" => scale = true,
                    "flood" => flood = true,
                    other => {
                        bail!("unknown section {other:?} in --only: failover, cpu, scale, flood")
                    }
                }
            }
        }
        let configs = match configs {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Config::parse)
                .collect::<Result<Vec<_>>>()?,
            None if quick => vec![Config::V3ms10, Config::V3ms100],
            None => Config::ALL.to_vec(),
        };
        let seed = seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
        });
        Ok(Some(Opts {
            trials,
            v2_trials,
            quick,
            load,
            seed,
            failover,
            cpu,
            scale,
            flood,
            configs,
            flood_secs: flood_secs.unwrap_or(if quick { 1.0 } else { 10.0 }),
            cpu_secs: cpu_secs.unwrap_or(if quick { 3.0 } else { 10.0 }),
            cpu_cases,
            scale_cases,
            floods,
            rates,
            xvrrpd_args,
        }))
    }

    /// Trials per daemon for a failover config.
    pub fn trials_for(&self, c: Config) -> usize {
        if c == Config::V2s1 {
            self.v2_trials
        } else if self.quick && c == Config::V3ms100 {
            1.min(self.trials)
        } else {
            self.trials
        }
    }
}

fn parse_num(name: &str, v: &str) -> Result<u64> {
    match v.parse::<u64>() {
        Ok(n) => Ok(n),
        Err(_) => bail!("{name} {v:?}: not a number"),
    }
}

fn parse_secs(name: &str, v: &str) -> Result<f64> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 120.0 => Ok(s),
        _ => bail!("{name} {v:?}: seconds in (0, 120]"),
    }
}
