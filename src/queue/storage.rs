//! Where segment files live: a directory ([`FileStorage`]), memory ([`MemStorage`], for tests
//! and benchmarks, not durable), or either behind [`FaultyStorage`], the seam through which
//! tests inject full disks, failing syncs and panics.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

/// A directory of named files.
pub trait Storage: Send + Sync + 'static {
    /// Names of the files present.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates a file (truncating one left by a failed attempt) for reading and appending.
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens an existing file for reading and appending.
    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>>;
    /// Reads a whole file into `buf` (cleared first).
    fn read_all(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Free bytes for unprivileged writers on the volume; `None` when unknown or unlimited.
    fn free_bytes(&self) -> Option<u64>;
    /// Makes creations, renames and removals durable (fsync of the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// Where it is, for messages.
    fn describe(&self, name: &str) -> String;
}

/// One open file.
pub trait SegmentFile: Send + Sync {
    /// Appends all of `buf` at the end. On error part of it may have been written: the caller
    /// truncates back.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`.
    fn sync(&self) -> io::Result<()>;
    fn truncate(&self, len: u64) -> io::Result<()>;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Files in a directory.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// Uses (and creates) `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct DiskFile(File);

impl SegmentFile for DiskFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

impl Storage for FileStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    out.push(name.to_owned());
                }
            }
        }
        Ok(out)
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(self.dir.join(name))?;
        file.set_len(0)?;
        Ok(Arc::new(DiskFile(file)))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join(name))?;
        Ok(Arc::new(DiskFile(file)))
    }

    fn read_all(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        File::open(self.dir.join(name))?.read_to_end(buf)?;
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn free_bytes(&self) -> Option<u64> {
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).ok()?;
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `path` is a valid NUL-terminated string and `s` points to writable memory
        // of the right type; statvfs(3) only writes into it.
        let rc = unsafe { libc::statvfs(path.as_ptr(), s.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled the struct.
        let s = unsafe { s.assume_init() };
        // The field types differ between platforms (u32 on some 32-bit targets).
        #[allow(clippy::unnecessary_cast)]
        Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Files in memory: the same code paths as on disk, nothing durable.
#[derive(Default)]
pub struct MemStorage {
    files: Mutex<BTreeMap<String, Arc<MemFile>>>,
}

#[derive(Default)]
struct MemFile(Mutex<Vec<u8>>);

impl SegmentFile for MemFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut b = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        b.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let b = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| b.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl MemStorage {
    fn files(&self) -> io::Result<std::sync::MutexGuard<'_, BTreeMap<String, Arc<MemFile>>>> {
        self.files.lock().map_err(|_| io::Error::other("poisoned"))
    }
}

impl Storage for MemStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files()?.keys().cloned().collect())
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let f = Arc::new(MemFile::default());
        self.files()?.insert(name.to_owned(), f.clone());
        Ok(f)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        match self.files()?.get(name) {
            Some(f) => Ok(f.clone()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
    fn read_all(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        let f = self.open_mem(name)?;
        let b = f.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        buf.clear();
        buf.extend_from_slice(&b);
        Ok(())
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.files()?.remove(name);
        Ok(())
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files()?;
        let f = files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        files.insert(to.to_owned(), f);
        Ok(())
    }
    fn free_bytes(&self) -> Option<u64> {
        None
    }
    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
    fn describe(&self, name: &str) -> String {
        format!(":memory:/{name}")
    }
}

impl MemStorage {
    fn open_mem(&self, name: &str) -> io::Result<Arc<MemFile>> {
        self.files()?
            .get(name)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
}

/// Switches a test flips to make the storage misbehave.
#[derive(Debug, Default)]
pub struct Faults {
    /// Appends fail with `ENOSPC` (after writing half of the buffer, as a full disk does).
    pub disk_full: AtomicBool,
    /// `fdatasync` fails with `EIO`.
    pub fail_sync: AtomicBool,
    /// The next N appends panic (a bug in the writer path).
    pub panic_appends: AtomicU32,
    /// Free space reported (`u64::MAX` = ask the real storage).
    pub free_bytes: AtomicU64,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            free_bytes: AtomicU64::new(u64::MAX),
            ..Self::default()
        })
    }
}

/// Any storage with [`Faults`] injected.
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    faults: Arc<Faults>,
}

impl FaultyStorage {
    pub fn new(inner: Arc<dyn Storage>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

struct FaultyFile {
    inner: Arc<dyn SegmentFile>,
    faults: Arc<Faults>,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl SegmentFile for FaultyFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if self
            .faults
            .panic_appends
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("injected panic in the queue's append path");
        }
        if self.faults.disk_full.load(Ordering::Acquire) {
            let _ = self.inner.append(&buf[..buf.len() / 2]);
            return Err(enospc());
        }
        self.inner.append(buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::Acquire) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
}

impl Storage for FaultyStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        if self.faults.disk_full.load(Ordering::Acquire) {
            return Err(enospc());
        }
        Ok(Arc::new(FaultyFile {
            inner: self.inner.create(name)?,
            faults: self.faults.clone(),
        }))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open(name)?,
            faults: self.faults.clone(),
        }))
    }
    fn read_all(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        self.inner.read_all(name, buf)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn free_bytes(&self) -> Option<u64> {
        match self.faults.free_bytes.load(Ordering::Acquire) {
            u64::MAX => self.inner.free_bytes(),
            n => Some(n),
        }
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}
