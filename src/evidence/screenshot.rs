//! Screenshots with headless Chromium, when it is installed. When it is not, the caller
//! gets the reason as text and the claim stays `unproven`: a screenshot that could not be
//! taken never counts as one that was.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The size of every screenshot (the browser window), so reports compare across runs.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;

pub struct Shot {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub browser: String,
}

/// The browser to use: `VIBER_CHROMIUM` (a path; empty or `none` disables screenshots),
/// else `/usr/bin/chromium`, else `chromium` or `chromium-browser` on PATH.
pub fn find_chromium() -> Result<PathBuf, String> {
    if let Some(v) = std::env::var_os("VIBER_CHROMIUM") {
        let p = PathBuf::from(&v);
        if v.is_empty() || v == "none" {
            return Err("screenshots are disabled (VIBER_CHROMIUM is empty or none)".into());
        }
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("VIBER_CHROMIUM={} does not exist", p.display()))
        };
    }
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Ok(fixed.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err("Chromium is not installed, so no screenshot could be taken (Debian/Ubuntu: `apt-get install chromium`)".into())
}

/// Arguments for one headless screenshot. Every background feature is off, so taking the
/// evidence does not itself talk to the network beyond the page.
pub fn args(out: &Path, profile: &Path, url: &str) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.display()),
        format!("--screenshot={}", out.display()),
        format!("--window-size={WIDTH},{HEIGHT}"),
        url.into(),
    ]
}

/// The same invocation as a shell command line, for a report's reproduce field.
pub fn command_line(browser: &str, out: &Path, url: &str) -> String {
    let profile = Path::new("\"$(mktemp -d)\"");
    let mut s = browser.to_string();
    for a in args(out, profile, url) {
        s.push(' ');
        if a.contains("$(mktemp") {
            s.push_str(&a);
        } else {
            s.push_str(&super::sh_quote(&a));
        }
    }
    s
}

/// Takes a screenshot of `url` with a fresh throwaway browser profile, removed after.
pub async fn capture(url: &str, timeout: Duration) -> Result<Shot, String> {
    let browser = find_chromium()?;
    let base = std::env::temp_dir().join(format!(
        "viber-shot-{}-{}",
        std::process::id(),
        crate::identity::random_hex(6)
    ));
    let profile = base.join("profile");
    let out = base.join("shot.png");
    std::fs::create_dir_all(&profile)
        .map_err(|e| format!("cannot create a browser profile dir: {e}"))?;
    let result = run_browser(&browser, &out, &profile, url, timeout).await;
    let _ = std::fs::remove_dir_all(&base);
    let png = result?;
    let (width, height) = png_size(&png).ok_or("Chromium wrote a file that is not a PNG")?;
    Ok(Shot {
        png,
        width,
        height,
        browser: browser.display().to_string(),
    })
}

async fn run_browser(
    browser: &Path,
    out: &Path,
    profile: &Path,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args(args(out, profile, url))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", browser.display()))?;
    let pid = child.id();
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("{} failed: {e}", browser.display()))?,
        Err(_) => {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(format!(
                "Chromium did not finish the screenshot within {} s",
                timeout.as_secs()
            ));
        }
    };
    if let Some(pid) = pid {
        // Helper processes (zygote, GPU) must not outlive the screenshot.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    match std::fs::read(out) {
        Ok(png) if !png.is_empty() => Ok(png),
        _ => {
            let err = String::from_utf8_lossy(&output.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "Chromium exited ({}) without writing a screenshot{}",
                output.status,
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            ))
        }
    }
}

/// Width and height from a PNG's IHDR chunk, or `None` when the bytes are not a PNG.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || !png.starts_with(SIG) || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}
