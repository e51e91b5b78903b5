//! C2SP `tlog-tiles` (<https://c2sp.org/tlog-tiles>): tile coordinates and their paths, which
//! tiles a tree of a given size has, hash-tile bytes from any [`HashReader`], entry bundles, and
//! a [`HashReader`] that reads a tree from tiles alone and authenticates every tile against a
//! checkpoint's root.
//!
//! Pure, like the rest of this crate: fetching tiles (HTTP, a directory) is the caller's, behind
//! [`TileFetch`].
//!
//! Tiles have height 8 (256 hashes). Hash tile `tile/<L>/<N>[.p/<W>]` holds the `W` hashes of
//! tree level `8·L` with indexes `256·N ..`; entry bundle `tile/entries/<N>[.p/<W>]` holds
//! records `256·N ..` as big-endian `u16` length-prefixed byte strings, exactly as signed. The
//! tile *contents* are those of Go's `sumdb/tlog` tiles of height 8; only the paths differ (Go
//! writes `tile/8/<L>/…` and `tile/8/data/…`).

use crate::{map_tlog, Hash, HashReader, LogError, HASH_SIZE};
use tlog_tiles::{Tile, TileHashReader, TileReader};

/// Tile height: each tile spans 8 tree levels and holds up to 256 hashes or entries.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u32 = 1 << TILE_HEIGHT;
/// Longest entry an entry bundle can frame (its length prefix is a `u16`).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;
/// Largest hash tile: 256 hashes of 32 bytes.
pub const MAX_HASH_TILE_BYTES: usize = TILE_WIDTH as usize * HASH_SIZE;
/// Largest entry bundle: 256 entries of at most [`MAX_ENTRY_BYTES`], each after its 2-byte length.
pub const MAX_BUNDLE_BYTES: usize = TILE_WIDTH as usize * (2 + MAX_ENTRY_BYTES);
/// Highest hash-tile level: level `L` holds tree level `8·L`, and a `u64` tree has 64 levels.
pub const MAX_TILE_LEVEL: u8 = 7;

/// One tile: a hash tile at `level`, or the entry bundle (`level` is `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileCoord {
    /// `Some(L)` for the hash tile at level `L`, `None` for an entry bundle.
    pub level: Option<u8>,
    /// Tile index `N` within its level.
    pub index: u64,
    /// Hashes or entries held, `1..=256`; `256` is a full (immutable) tile.
    pub width: u32,
}

impl TileCoord {
    /// The most bytes this tile can hold: what a fetcher may read before refusing it.
    pub fn max_bytes(&self) -> usize {
        match self.level {
            Some(_) => self.width as usize * HASH_SIZE,
            None => self.width as usize * (2 + MAX_ENTRY_BYTES),
        }
    }

    /// A hash tile.
    pub fn hash(level: u8, index: u64, width: u32) -> Self {
        Self {
            level: Some(level),
            index,
            width,
        }
    }

    /// An entry bundle.
    pub fn entries(index: u64, width: u32) -> Self {
        Self {
            level: None,
            index,
            width,
        }
    }

    /// Whether the tile is full: its bytes never change again, so it may be cached forever.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The C2SP path, e.g. `tile/0/x001/234.p/17` or `tile/entries/000`.
    pub fn path(&self) -> String {
        let mut n = self.index;
        let mut index = format!("{:03}", n % 1000);
        while n >= 1000 {
            n /= 1000;
            index = format!("x{:03}/{index}", n % 1000);
        }
        let level = match self.level {
            Some(l) => l.to_string(),
            None => "entries".to_string(),
        };
        let partial = if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        format!("tile/{level}/{index}{partial}")
    }

    /// Parse a C2SP tile path (the part from `tile/` on). Only the one canonical spelling of each
    /// tile is accepted, so a cache never holds two names for the same bytes.
    pub fn parse(path: &str) -> Result<Self, LogError> {
        let bad = || LogError::BadTilePath(path.chars().take(120).collect());
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
        let level = if level == "entries" {
            None
        } else {
            if level.is_empty() || level.len() > 1 || !level.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let l: u8 = level.parse().map_err(|_| bad())?;
            if l > MAX_TILE_LEVEL {
                return Err(bad());
            }
            Some(l)
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                if w.is_empty() || w.len() > 3 || w.starts_with('0') {
                    return Err(bad());
                }
                if !w.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let w: u32 = w.parse().map_err(|_| bad())?;
                if w == 0 || w >= TILE_WIDTH {
                    return Err(bad());
                }
                (i, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let elements: Vec<&str> = index_part.split('/').collect();
        if elements.len() > 7 {
            return Err(bad());
        }
        let mut index: u64 = 0;
        for (i, e) in elements.iter().enumerate() {
            let last = i + 1 == elements.len();
            let digits = if last {
                *e
            } else {
                e.strip_prefix('x').ok_or_else(bad)?
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            // A leading all-zero element would be a second spelling of a smaller index.
            if i == 0 && !last && digits == "000" {
                return Err(bad());
            }
            let d: u64 = digits.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|v| v.checked_add(d))
                .ok_or_else(bad)?;
        }
        Ok(Self {
            level,
            index,
            width,
        })
    }

    /// Whether a tree of `size` records can serve this tile: a full tile once its 256 hashes (or
    /// entries) exist, a partial tile of width `W` once its first `W` do. Hashes and entries never
    /// change once written, so a partial tile stays valid (a prefix of the later, wider tile)
    /// after the tree grows past it; clients that hold an older checkpoint still get its tiles.
    pub fn exists_in(&self, size: u64) -> bool {
        let count = match self.level {
            None => size,
            Some(l) => {
                let shift = u32::from(l) * u32::from(TILE_HEIGHT);
                if shift >= 64 {
                    0
                } else {
                    size >> shift
                }
            }
        };
        let end = self
            .index
            .checked_mul(u64::from(TILE_WIDTH))
            .and_then(|first| first.checked_add(u64::from(self.width)));
        matches!(end, Some(end) if end <= count) && self.width >= 1 && self.width <= TILE_WIDTH
    }

    /// The stored-hash indexes a hash tile holds, left to right (empty for an entry bundle).
    pub fn stored_hash_indexes(&self) -> Vec<u64> {
        let Some(l) = self.level else {
            return Vec::new();
        };
        let tree_level = l * TILE_HEIGHT;
        let first = self.index * u64::from(TILE_WIDTH);
        (0..u64::from(self.width))
            .map(|i| crate::stored_hash_index(tree_level, first + i))
            .collect()
    }

    /// The record indexes an entry bundle holds (empty for a hash tile).
    pub fn entry_range(&self) -> std::ops::Range<u64> {
        if self.level.is_some() {
            return 0..0;
        }
        let first = self.index * u64::from(TILE_WIDTH);
        first..first + u64::from(self.width)
    }

    fn from_tlog(tile: &Tile) -> Self {
        if tile.is_data() {
            Self::entries(tile.level_index(), tile.width())
        } else {
            Self::hash(tile.level(), tile.level_index(), tile.width())
        }
    }
}

/// Every tile (hash tiles at each level, then entry bundles) present in a tree of `new_size`
/// but not, with the same bytes, in a tree of `old_size`: the new full tiles and the new
/// partial tiles at the right edge. `old_size = 0` lists the whole tree. This is what an
/// incremental publisher writes.
pub fn new_tiles(old_size: u64, new_size: u64) -> Vec<TileCoord> {
    let mut out = Vec::new();
    if new_size <= old_size {
        return out;
    }
    let w = u64::from(TILE_WIDTH);
    let mut push_level = |level: Option<u8>, old_count: u64, new_count: u64| {
        // Tiles from the one holding the old count's first incomplete position to the end.
        let first = old_count / w;
        let full = new_count / w;
        for n in first..full {
            out.push(TileCoord {
                level,
                index: n,
                width: TILE_WIDTH,
            });
        }
        let partial = (new_count % w) as u32;
        if partial > 0 && new_count > old_count {
            out.push(TileCoord {
                level,
                index: full,
                width: partial,
            });
        }
    };
    for l in 0..=MAX_TILE_LEVEL {
        let shift = u32::from(l) * u32::from(TILE_HEIGHT);
        let (old_count, new_count) = (old_size >> shift, new_size >> shift);
        if new_count == 0 {
            break;
        }
        if new_count == old_count {
            continue;
        }
        push_level(Some(l), old_count, new_count);
    }
    push_level(None, old_size, new_size);
    out
}

/// The bytes of hash tile `tile` of a tree of `size`, read from stored hashes.
pub fn hash_tile_bytes<R: HashReader>(
    tile: &TileCoord,
    size: u64,
    reader: &R,
) -> Result<Vec<u8>, LogError> {
    if tile.level.is_none() || !tile.exists_in(size) {
        return Err(LogError::TileNotInTree(tile.path()));
    }
    let hashes = reader
        .read_hashes(&tile.stored_hash_indexes())
        .map_err(map_tlog)?;
    let mut out = Vec::with_capacity(hashes.len() * HASH_SIZE);
    for h in hashes {
        out.extend_from_slice(&h.0);
    }
    Ok(out)
}

/// Frame `entries` as a C2SP entry bundle: each one a big-endian `u16` length, then its bytes.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let len = u16::try_from(e.len()).map_err(|_| LogError::EntryTooLarge {
            position: i as u64,
            len_bytes: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Split an entry bundle that must hold exactly `width` entries.
pub fn decode_bundle(data: &[u8], width: u32) -> Result<Vec<&[u8]>, LogError> {
    let mut out = Vec::with_capacity(width as usize);
    let mut at = 0usize;
    while at < data.len() {
        let bad = || LogError::MalformedBundle(format!("truncated entry at byte {at}"));
        let len_bytes = data.get(at..at + 2).ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let entry = data.get(at + 2..at + 2 + len).ok_or_else(bad)?;
        out.push(entry);
        at += 2 + len;
        if out.len() > width as usize {
            break;
        }
    }
    if out.len() != width as usize {
        return Err(LogError::MalformedBundle(format!(
            "{} entries where the tile holds {width}",
            out.len()
        )));
    }
    Ok(out)
}

/// Where tiles come from: a log's HTTP prefix, a published directory, a cache. Returns the
/// bytes served for each coordinate, or an error naming the tile.
pub trait TileFetch {
    fn fetch(&self, tiles: &[TileCoord]) -> Result<Vec<Vec<u8>>, LogError>;
}

/// Most authenticated hash tiles a [`TiledTree`] keeps (8 KiB each: 32 MiB at most).
pub const MAX_CACHED_TILES: usize = 4096;

/// A [`HashReader`] over the tree of one verified checkpoint, reading hash tiles through a
/// [`TileFetch`]. Every tile it uses is authenticated against the checkpoint's root before any
/// hash is returned (Go's `tlog.TileHashReader`), so proofs built from it are as good as proofs
/// from the log server itself. Authenticated tiles are kept (up to [`MAX_CACHED_TILES`]) so a
/// monitor reading the whole log fetches each tile once, not once per bundle.
pub struct TiledTree<'a, F: TileFetch> {
    size: u64,
    root: Hash,
    fetch: &'a F,
    cache: std::cell::RefCell<std::collections::HashMap<TileCoord, Vec<u8>>>,
    /// The fetcher's own error, kept while `tlog_tiles` (whose error type cannot carry it)
    /// unwinds, so [`TiledTree::explain`] can report it with its code.
    fetch_error: std::cell::RefCell<Option<LogError>>,
}

impl<'a, F: TileFetch> TiledTree<'a, F> {
    pub fn new(size: u64, root: Hash, fetch: &'a F) -> Self {
        Self {
            size,
            root,
            fetch,
            fetch_error: std::cell::RefCell::new(None),
            cache: std::cell::RefCell::new(std::collections::HashMap::new()),
        }
    }

    /// The tree size of the checkpoint this tree authenticates against.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Turn an error from a proof computed over this tree into its cause: the fetcher's error
    /// (`E_TILE_NOT_FOUND`, `E_TILE_FETCH`, ...) if a fetch failed, else `E_TILE_INVALID` for a
    /// tile that did not authenticate against the root.
    pub fn explain(&self, err: LogError) -> LogError {
        if let Some(e) = self.fetch_error.borrow_mut().take() {
            return e;
        }
        match err {
            LogError::Storage(m) => LogError::TileInvalid(m),
            other => other,
        }
    }
}

struct Adapter<'a, 'b, F: TileFetch>(&'b TiledTree<'a, F>);

/// Check every full hash tile of a batch whose parent tile is in the batch against the hash its
/// parent holds for it. `tlog_tiles` 0.2.0 (like the Go code it ports) means to do this for
/// every tile it fetches below the ones that authenticate the root, but starts its loop at the
/// number of *root subtrees* rather than the number of distinct tiles they live in, so when
/// several subtrees share a tile the first child tiles go unchecked (a forged `tile/0/000` under
/// a tree of 300 was accepted). The parents are checked the same way up to the tiles the root
/// authenticates, so every hash returned is bound to the root.
fn authenticate_children(tiles: &[Tile], data: &[Vec<u8>], size: u64) -> Result<(), LogError> {
    for (tile, bytes) in tiles.iter().zip(data) {
        if tile.is_data() || bytes.len() != tile.width() as usize * HASH_SIZE {
            continue;
        }
        if tile.width() != TILE_WIDTH {
            continue;
        }
        let Some(parent) = tile.parent(1, size) else {
            continue;
        };
        let Some(j) = tiles.iter().position(|t| *t == parent) else {
            continue;
        };
        let bad = || LogError::TileInvalid(TileCoord::from_tlog(tile).path());
        let index = crate::stored_hash_index(parent.level() * TILE_HEIGHT, tile.level_index());
        let want = parent.hash_at_index(&data[j], index).map_err(|_| bad())?;
        if Tile::subtree_hash(bytes) != want {
            return Err(bad());
        }
    }
    Ok(())
}

impl<F: TileFetch> TileReader for Adapter<'_, '_, F> {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        let coords: Vec<TileCoord> = tiles.iter().map(TileCoord::from_tlog).collect();
        let mut out: Vec<Option<Vec<u8>>> = {
            let cache = self.0.cache.borrow();
            coords.iter().map(|c| cache.get(c).cloned()).collect()
        };
        let missing: Vec<TileCoord> = coords
            .iter()
            .zip(&out)
            .filter(|(_, d)| d.is_none())
            .map(|(c, _)| *c)
            .collect();
        let fail = |e: LogError| {
            *self.0.fetch_error.borrow_mut() = Some(e);
            tlog_tiles::Error::InconsistentTile
        };
        if !missing.is_empty() {
            let fetched = self.0.fetch.fetch(&missing).map_err(fail)?;
            if fetched.len() != missing.len() {
                return Err(fail(LogError::TileInvalid(
                    "the fetcher returned the wrong number of tiles".into(),
                )));
            }
            let mut fetched = fetched.into_iter();
            for slot in out.iter_mut().filter(|d| d.is_none()) {
                *slot = fetched.next();
            }
        }
        let data: Vec<Vec<u8>> = out.into_iter().map(Option::unwrap_or_default).collect();
        // On the whole batch, cached tiles included: a fetched child's parent may be cached.
        authenticate_children(tiles, &data, self.0.size).map_err(fail)?;
        Ok(data)
    }

    /// Called by `TileHashReader` only once the tiles are authenticated against the root.
    fn save_tiles(&self, tiles: &[Tile], data: &[Vec<u8>]) {
        let mut cache = self.0.cache.borrow_mut();
        for (tile, bytes) in tiles.iter().zip(data) {
            if cache.len() >= MAX_CACHED_TILES {
                cache.clear();
            }
            cache.insert(TileCoord::from_tlog(tile), bytes.clone());
        }
    }
}

impl<F: TileFetch> HashReader for TiledTree<'_, F> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        if self.size == 0 {
            return Err(tlog_tiles::Error::IndexesNotInTree);
        }
        let adapter = Adapter(self);
        TileHashReader::new(self.size, self.root, &adapter).read_hashes(indexes)
    }
}

impl<F: TileFetch> TiledTree<'_, F> {
    /// The entries `range` of the tree, each checked against its leaf hash in an authenticated
    /// level-0 tile (so a bundle that differs from the tree by one byte is refused).
    pub fn entries(&self, range: std::ops::Range<u64>) -> Result<Vec<Vec<u8>>, LogError> {
        if range.end > self.size || range.start > range.end {
            return Err(LogError::IndexOutOfRange {
                index: range.end.saturating_sub(1),
                size: self.size,
            });
        }
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let w = u64::from(TILE_WIDTH);
        let mut at = range.start;
        while at < range.end {
            let n = at / w;
            let tile_end = ((n + 1) * w).min(self.size);
            let bundle = TileCoord::entries(n, (tile_end - n * w) as u32);
            let data = self
                .fetch
                .fetch(&[bundle])?
                .pop()
                .ok_or_else(|| LogError::TileNotInTree(bundle.path()))?;
            let entries = decode_bundle(&data, bundle.width)?;
            let take_end = tile_end.min(range.end);
            let wanted: Vec<u64> = (at..take_end)
                .map(|i| crate::stored_hash_index(0, i))
                .collect();
            let leaves = self
                .read_hashes(&wanted)
                .map_err(|e| self.explain(map_tlog(e)))?;
            for (i, leaf) in (at..take_end).zip(leaves) {
                let entry = entries[(i - n * w) as usize];
                if crate::leaf_hash(entry) != leaf {
                    return Err(LogError::MalformedBundle(format!(
                        "entry {i} in {} does not hash to the tree's leaf",
                        bundle.path()
                    )));
                }
                out.push(entry.to_vec());
            }
            at = take_end;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tree_root, MemoryHashes};

    #[test]
    fn paths_round_trip_and_only_the_canonical_spelling_parses() {
        let cases = [
            (TileCoord::hash(0, 0, 256), "tile/0/000"),
            (TileCoord::hash(0, 1_234_067, 256), "tile/0/x001/x234/067"),
            (TileCoord::hash(1, 5, 17), "tile/1/005.p/17"),
            (TileCoord::entries(1000, 1), "tile/entries/x001/000.p/1"),
        ];
        for (coord, path) in cases {
            assert_eq!(coord.path(), path);
            assert_eq!(TileCoord::parse(path).unwrap(), coord);
        }
        for bad in [
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x000/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/017",
            "tile/8/000",
            "tile/00/000",
            "tile/data/000",
            "tile/0/001/002",
            "tiles/0/000",
            "tile/0/x001",
        ] {
            let err = TileCoord::parse(bad).unwrap_err();
            assert_eq!(err.code(), "E_TILE_PATH", "{bad}");
        }
    }

    #[test]
    fn tiles_of_a_tree_and_incremental_sets() {
        let all = new_tiles(0, 70_000);
        // level 0: 273 full + 1 partial (112); level 1: 1 full (256 of 273) + partial 17;
        // level 2: 273>>8 = 1 ... 70_000 >> 16 = 1 -> partial width 1; entries like level 0.
        assert!(all.contains(&TileCoord::hash(0, 272, 256)));
        assert!(all.contains(&TileCoord::hash(0, 273, 112)));
        assert!(all.contains(&TileCoord::hash(1, 1, 17)));
        assert!(all.contains(&TileCoord::hash(2, 0, 1)));
        assert!(all.contains(&TileCoord::entries(273, 112)));
        for t in &all {
            assert!(t.exists_in(70_000), "{}", t.path());
        }
        // A partial tile stays servable (as a prefix) after the tree grows; a wider one does not
        // exist yet.
        assert!(TileCoord::hash(0, 273, 100).exists_in(70_000));
        assert!(!TileCoord::hash(0, 273, 113).exists_in(70_000));
        assert!(!TileCoord::hash(0, 274, 256).exists_in(70_000));
        let inc = new_tiles(69_999, 70_000);
        assert!(inc.contains(&TileCoord::hash(0, 273, 112)));
        assert!(!inc.contains(&TileCoord::hash(0, 272, 256)));
        assert!(new_tiles(5, 5).is_empty());
        // Every tile of the big tree is in the union of increments.
        let mut union = std::collections::BTreeSet::new();
        for (a, b) in [(0, 10), (10, 256), (256, 300), (300, 70_000)] {
            union.extend(new_tiles(a, b));
        }
        for t in all {
            assert!(union.contains(&t), "{}", t.path());
        }
    }

    struct Served {
        hashes: MemoryHashes,
        entries: Vec<Vec<u8>>,
        size: u64,
        corrupt: Option<TileCoord>,
        fetched_hash_tiles: std::cell::Cell<usize>,
    }

    impl TileFetch for Served {
        fn fetch(&self, tiles: &[TileCoord]) -> Result<Vec<Vec<u8>>, LogError> {
            let hash_tiles = tiles.iter().filter(|t| t.level.is_some()).count();
            self.fetched_hash_tiles
                .set(self.fetched_hash_tiles.get() + hash_tiles);
            tiles
                .iter()
                .map(|t| {
                    let mut data = match t.level {
                        Some(_) => hash_tile_bytes(t, self.size, &self.hashes)?,
                        None => encode_bundle(
                            t.entry_range().map(|i| self.entries[i as usize].as_slice()),
                        )?,
                    };
                    if Some(*t) == self.corrupt {
                        let last = data.len() - 1;
                        data[last] ^= 1;
                    }
                    Ok(data)
                })
                .collect()
        }
    }

    #[test]
    fn a_tree_read_from_tiles_gives_the_same_proofs_and_refuses_a_bad_tile() {
        let size = 600u64;
        let mut hashes = MemoryHashes::new();
        let entries: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("record {i}").into_bytes())
            .collect();
        for e in &entries {
            hashes.append(e);
        }
        let root = tree_root(size, &hashes).unwrap();
        let mut served = Served {
            hashes,
            entries,
            size,
            corrupt: None,
            fetched_hash_tiles: std::cell::Cell::new(0),
        };
        {
            let tiled = TiledTree::new(size, root, &served);
            for (i, n) in [(0, size), (599, size), (300, 512)] {
                let want = crate::inclusion_proof(i, n, &served.hashes).unwrap();
                assert_eq!(crate::inclusion_proof(i, n, &tiled).unwrap(), want);
            }
            let want = crate::consistency_proof(100, size, &served.hashes).unwrap();
            assert_eq!(crate::consistency_proof(100, size, &tiled).unwrap(), want);
            let got = tiled.entries(250..260).unwrap();
            assert_eq!(got[0], b"record 250");
            assert_eq!(got.len(), 10);
        }
        // Reading the whole log fetches each of its 4 hash tiles (3 at level 0, 1 at level 1)
        // once: authenticated tiles are kept.
        served.fetched_hash_tiles.set(0);
        let tiled = TiledTree::new(size, root, &served);
        assert_eq!(tiled.entries(0..size).unwrap().len(), 600);
        assert_eq!(served.fetched_hash_tiles.get(), 4);
        served.corrupt = Some(TileCoord::entries(1, 256));
        let tiled = TiledTree::new(size, root, &served);
        assert_eq!(
            tiled.entries(300..512).unwrap_err().code(),
            "E_TILE_BUNDLE_MALFORMED"
        );
        served.corrupt = Some(TileCoord::hash(0, 2, 88));
        let tiled = TiledTree::new(size, root, &served);
        assert!(crate::inclusion_proof(599, size, &tiled).is_err());
        // A forged full tile below root subtrees that share a tile (what `tlog_tiles` alone
        // let through): every size, every index of the forged tile.
        for size in [257u64, 300, 511, 513, 600] {
            let root = tree_root(size, &served.hashes).unwrap();
            served.size = size;
            served.corrupt = Some(TileCoord::hash(0, 0, 256));
            let tiled = TiledTree::new(size, root, &served);
            for i in [0u64, 200, 255] {
                let err = crate::inclusion_proof(i, size, &tiled)
                    .map_err(|e| tiled.explain(e))
                    .unwrap_err();
                assert_eq!(err.code(), "E_TILE_INVALID", "leaf {i} of {size}");
            }
            assert_eq!(
                tiled.entries(0..10).unwrap_err().code(),
                "E_TILE_INVALID",
                "{size}"
            );
        }
    }

    #[test]
    fn bundles_frame_and_refuse() {
        let a = b"alpha".as_slice();
        let b = vec![7u8; 300];
        let data = encode_bundle([a, b.as_slice()]).unwrap();
        assert_eq!(&data[..2], &[0, 5]);
        assert_eq!(decode_bundle(&data, 2).unwrap(), vec![a, b.as_slice()]);
        assert!(decode_bundle(&data, 3).is_err());
        assert!(decode_bundle(&data[..data.len() - 1], 2).is_err());
        let big = vec![0u8; MAX_ENTRY_BYTES + 1];
        assert_eq!(
            encode_bundle([big.as_slice()]).unwrap_err().code(),
            "E_TILE_ENTRY_TOO_LARGE"
        );
    }
}
