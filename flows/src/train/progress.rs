//! Progress of a training run: a bar on a terminal, plain lines otherwise (CI logs, files).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a [`Trainer`](super::Trainer) reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A progress bar when standard output is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Always a progress bar (drawn only on a terminal).
    Bar,
    /// Always plain lines, one every `log_every` iterations.
    Lines,
    /// Nothing (tests).
    Off,
}

/// The time per iteration, smoothed by an exponential moving average, and the ETA it gives.
///
/// The weight `α = 2/(w + 1)` of the newest sample is that of a `w`-sample moving average
/// (the usual span convention), so a change of speed shows within about `w` iterations while
/// the noise of single iterations is averaged out.
#[derive(Clone, Debug)]
pub(super) struct Smoothed {
    alpha: f64,
    value: Option<f64>,
}

impl Smoothed {
    pub(super) fn new(window: usize) -> Self {
        Smoothed {
            alpha: 2.0 / (window as f64 + 1.0),
            value: None,
        }
    }

    pub(super) fn push(&mut self, seconds: f64) {
        self.value = Some(match self.value {
            None => seconds,
            Some(v) => v + self.alpha * (seconds - v),
        });
    }

    /// Seconds per iteration (0 before the first sample).
    pub(super) fn get(&self) -> f64 {
        self.value.unwrap_or(0.0)
    }
}

/// `1h02m`, `3m05s`, `12.3s`.
pub(super) fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{seconds:.1}s")
    }
}

/// The reporter: an indicatif bar, or plain lines on standard output.
pub(super) enum Reporter {
    Bar(ProgressBar),
    Lines,
    Off,
}

impl Reporter {
    pub(super) fn new(mode: ProgressMode, total: u64, start: u64) -> Self {
        let bar = match mode {
            ProgressMode::Auto => std::io::stdout().is_terminal(),
            ProgressMode::Bar => true,
            ProgressMode::Lines => false,
            ProgressMode::Off => return Reporter::Off,
        };
        if !bar {
            return Reporter::Lines;
        }
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template("{bar:30} {pos:>6}/{len:6} {msg}")
            .expect("a valid progress template")
            .progress_chars("=> ");
        pb.set_style(style);
        pb.set_position(start);
        pb.enable_steady_tick(Duration::from_millis(250));
        Reporter::Bar(pb)
    }

    /// Reports iteration `it` of `total`; `line` is the metrics text. Plain lines are printed
    /// only when `print_line` is set (every `log_every` iterations and at the end).
    pub(super) fn update(&self, it: u64, total: u64, line: &str, print_line: bool) {
        match self {
            Reporter::Bar(pb) => {
                pb.set_position(it);
                pb.set_message(line.to_string());
            }
            Reporter::Lines if print_line => {
                let w = total.to_string().len();
                println!("iter {it:>w$}/{total}  {line}");
            }
            _ => {}
        }
    }

    /// A message that is not a progress line (validation, early stopping, checkpoints).
    pub(super) fn note(&self, text: &str) {
        match self {
            Reporter::Bar(pb) => pb.println(text),
            Reporter::Lines => println!("{text}"),
            Reporter::Off => {}
        }
    }

    pub(super) fn finish(&self) {
        if let Reporter::Bar(pb) = self {
            pb.finish();
        }
    }
}
