//! `set_num_threads` on a fresh process: the first call sizes the pool, the same size again is
//! accepted, another size is a typed error. (One test only: the pool is per process.)

use convnet::{set_num_threads, Error};

#[test]
fn set_num_threads_sizes_the_global_pool_once() {
    assert!(matches!(
        set_num_threads(0),
        Err(Error::InvalidConfig { .. })
    ));
    set_num_threads(3).unwrap();
    assert_eq!(rayon::current_num_threads(), 3);
    set_num_threads(3).unwrap();
    let err = set_num_threads(2).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("already runs 3 threads"), "{err}");
    // Parallel work runs on those 3 threads.
    use rayon::prelude::*;
    let most = (0..256)
        .into_par_iter()
        .map(|_| rayon::current_thread_index().expect("on a pool thread"))
        .max();
    assert!(most.is_some_and(|i| i < 3));
}
