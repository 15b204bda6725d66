//! The patch of a bundle's `config.json`: netjail's object merged into the container's
//! own profile, written back in place.

use super::*;

/// What [`patch_config`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// The patched configuration.
    pub text: String,
    /// Whether netjail's rules were merged into a profile of the container's own.
    pub merged: bool,
    /// Capabilities taken out of `process.capabilities`.
    pub removed_capabilities: Vec<String>,
}

/// Patches the bundle configuration `text` (`origin` names it in errors) for `policy`, known
/// to the broker as `label`:
///
/// - `linux.seccomp`: netjail's object, merged with the container's own profile if it has
///   one (see the module's docs). The container's profile is kept in the annotation
///   [`ORIGINAL_SECCOMP_ANNOTATION`]; when that annotation is there, the merge starts from
///   it, so patching again (with the same or another policy) gives what one patch of the
///   original gives.
/// - `process.noNewPrivileges`: true.
/// - `process.capabilities`: every set loses the capabilities `netjail run` drops
///   (`DROPPED_CAPABILITIES` in `client/src/sys/capabilities.rs` says why each) except those the policy keeps. Capabilities are
///   not given back by a later patch with a policy that keeps more.
///
/// Other keys and their order stay as they are.
pub fn patch_config(
    text: &str,
    origin: &str,
    policy: &Policy,
    label: &str,
    listener: &str,
) -> Result<Patched, OciError> {
    let not_object = |what: &str| OciError::NotObject {
        origin: origin.to_owned(),
        what: what.to_owned(),
    };
    let mut doc = Json::parse(text).map_err(|e| json_error(origin, &e))?;
    if !doc.is_object() {
        return Err(not_object("the document"));
    }
    if doc.get("annotations").is_some_and(|a| !a.is_object()) {
        return Err(not_object("annotations"));
    }
    if doc.get("linux").is_some_and(|a| !a.is_object()) {
        return Err(not_object("linux"));
    }
    if doc.get("process").is_some_and(|a| !a.is_object()) {
        return Err(not_object("process"));
    }
    let original = original_profile(&doc, origin)?;
    let rules = filter::rules(policy)?;
    let metadata = listener_metadata(policy, label);
    let seccomp = match &original {
        None => seccomp_object(policy, label, listener)?,
        Some(theirs) => merge(theirs, &rules, listener, &metadata, origin)?,
    };
    check(&seccomp, origin)?;
    if doc.get("linux").is_none() {
        doc.set("linux", Json::Object(Vec::new()));
    }
    if let Some(linux) = doc.get_mut("linux") {
        linux.set("seccomp", seccomp);
    }
    if doc.get("annotations").is_none() {
        doc.set("annotations", Json::Object(Vec::new()));
    }
    let kept = original.as_ref().map_or("null".into(), Json::to_compact);
    if let Some(annotations) = doc.get_mut("annotations") {
        annotations.set(ORIGINAL_SECCOMP_ANNOTATION, Json::String(kept));
    }
    if doc.get("process").is_none() {
        doc.set("process", Json::Object(Vec::new()));
    }
    let removed_capabilities = drop_capabilities(&mut doc, policy);
    // Keep the file's indentation (runc spec writes tabs) and final newline.
    let indent: &[u8] = match text.lines().nth(1) {
        Some(line) if line.starts_with('\t') => b"\t",
        Some(line) if line.starts_with("    ") && !line.starts_with("     ") => b"    ",
        _ => b"  ",
    };
    let mut out = doc.to_pretty(indent);
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(Patched {
        text: out,
        merged: original.is_some(),
        removed_capabilities,
    })
}

/// Checks a `linux.seccomp` object the way a runtime would take it: libseccomp accepts
/// every rule, the program fits the kernel's limit, and no `write` is notified (runc refuses
/// that: it writes the listener's number to its parent after the filter is loaded).
fn check(seccomp: &Json, origin: &str) -> Result<(), OciError> {
    let profile_error = |message: String| OciError::Profile {
        origin: origin.to_owned(),
        what: "the merged linux.seccomp".into(),
        message,
    };
    let profile = Profile::parse(seccomp).map_err(profile_error)?;
    if profile
        .rules
        .iter()
        .any(|r| r.name == "write" && r.action.class() == Class::Notifies)
    {
        return Err(profile_error(
            "SCMP_ACT_NOTIFY on write (runc refuses it)".into(),
        ));
    }
    let ctx = runtime_context(seccomp, None).map_err(profile_error)?;
    let program = filter::export(&ctx)?;
    if program.instructions.len() > BPF_MAXINSNS {
        return Err(OciError::TooLong {
            origin: origin.to_owned(),
            instructions: program.instructions.len(),
        });
    }
    Ok(())
}

/// Patches the bundle configuration at `path` in place for the policy `spec` (a built-in name
/// or a file): [`patch_config`], written to a temporary file in the same directory and
/// renamed over the original (same permissions).
pub fn patch_file(path: &Path, spec: &str, listener: &str) -> Result<Patched, OciError> {
    let label = policy_label(spec)?;
    let (_, policy) = crate::policy::load(spec)?;
    let text = std::fs::read_to_string(path).map_err(|source| OciError::Read {
        path: path.to_owned(),
        source,
    })?;
    let origin = path.display().to_string();
    let patched = patch_config(&text, &origin, &policy, &label, listener)?;
    let write_error = |source| OciError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.netjail-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(patched.text.as_bytes())?;
        let permissions = std::fs::metadata(path)?.permissions();
        file.set_permissions(permissions)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(write_error(e));
    }
    Ok(patched)
}

/// The container's own `linux.seccomp` profile: the one a previous patch kept in the
/// annotation (so that patching twice is patching once), else the document's, if any.
fn original_profile(doc: &Json, origin: &str) -> Result<Option<Json>, OciError> {
    let annotation = doc
        .get("annotations")
        .and_then(|a| a.get(ORIGINAL_SECCOMP_ANNOTATION));
    Ok(match annotation {
        Some(kept) => {
            let bad = |message: String| OciError::Profile {
                origin: origin.to_owned(),
                what: format!("annotations.\"{ORIGINAL_SECCOMP_ANNOTATION}\""),
                message,
            };
            let kept = kept.as_str().ok_or_else(|| bad("not a string".into()))?;
            match Json::parse(kept).map_err(|e| bad(e.to_string()))? {
                Json::Null => None,
                object => Some(object),
            }
        }
        None => doc
            .get("linux")
            .and_then(|l| l.get("seccomp"))
            .filter(|s| **s != Json::Null)
            .cloned(),
    })
}

/// Sets `process.noNewPrivileges` and takes the capabilities `netjail run` drops out of every
/// set of `process.capabilities`, except those the policy keeps; returns those it took out.
fn drop_capabilities(doc: &mut Json, policy: &Policy) -> Vec<String> {
    let keep = policy.confinement().keep_capabilities();
    let dropped: Vec<&str> = crate::sys::DROPPED_CAPABILITIES
        .iter()
        .filter(|(n, _)| !keep.contains(n))
        .map(|&(_, name)| name)
        .collect();
    let mut removed_capabilities = Vec::new();
    if let Some(process) = doc.get_mut("process") {
        process.set("noNewPrivileges", Json::Bool(true));
        if let Some(Json::Object(sets)) = process.get_mut("capabilities") {
            for (_, set) in sets.iter_mut() {
                if let Json::Array(caps) = set {
                    caps.retain(|c| {
                        let name = c.as_str().unwrap_or_default();
                        let drop = dropped.contains(&name);
                        if drop && !removed_capabilities.iter().any(|r| r == name) {
                            removed_capabilities.push(name.to_owned());
                        }
                        !drop
                    });
                }
            }
        }
    }
    removed_capabilities
}
