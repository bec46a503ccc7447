//! Finite checks against the reference: counts and first indices are integers, so the
//! comparison is exact.

mod common;
use common::*;
use eigengrad::kernels::finite::{
    check_finite, decode_flags, finite_check_dispatch, finite_check_parts_dispatch, flag_buffer,
    FLAG_WORDS,
};
use eigengrad::tensor::read_words;
use eigengrad::{reference, Error, Tensor};

/// NaN with several payloads (quiet, negative, signalling) and both infinities.
const BAD: [u32; 5] = [
    0x7fc0_0000,
    0xffff_ffff,
    0x7f80_0001,
    0x7f80_0000,
    0xff80_0000,
];

/// Runs one check of `x` and returns what the flags say.
fn device_check(x: &[f32]) -> Option<(u64, u64)> {
    let dev = device();
    let t = Tensor::from_slice(&dev, &[x.len()], x).unwrap();
    let flags = flag_buffer(&dev, 1);
    let d = finite_check_dispatch(&dev, t.buffer(), &flags, x.len(), 0).unwrap();
    eigengrad::kernels::run(&dev, &[&d]).unwrap();
    decode_flags(&read_words(&dev, &flags, FLAG_WORDS).unwrap(), 0)
}

#[test]
fn single_bad_value_at_first_middle_last() {
    for n in [1usize, 7, 31, 127, 1000, 100_003] {
        // Finite extremes that must not be flagged: ±max, subnormals, ±0.
        let mut x = random(n as u64, n, 1e3);
        for (i, v) in [
            f32::MAX,
            f32::MIN,
            f32::from_bits(1),
            -0.0,
            f32::MIN_POSITIVE,
        ]
        .into_iter()
        .enumerate()
        {
            if i < n {
                x[(i * 7919) % n] = v;
            }
        }
        assert_eq!(device_check(&x), None, "n={n} all finite");
        assert!(check_finite(&Tensor::from_slice(&device(), &[n], &x).unwrap(), "x").is_ok());
        for &bad in &BAD {
            for at in [0, n / 2, n - 1] {
                let mut y = x.clone();
                y[at] = f32::from_bits(bad);
                let expected = reference::finite::non_finite(&y);
                assert_eq!(expected, Some((1, at as u64)));
                assert_eq!(device_check(&y), expected, "n={n} bits {bad:#x} at {at}");
            }
        }
    }
}

#[test]
fn several_bad_values_first_index_and_count() {
    for n in [31usize, 127, 1000, 100_003] {
        let mut x = random(n as u64 + 1, n, 1.0);
        // Indices spread so that several invocations (16 values each, strided) find some.
        let places = [n - 1, n / 3, n / 2, n / 7 + 1, n - 2];
        for (k, &i) in places.iter().enumerate() {
            x[i] = f32::from_bits(BAD[k % BAD.len()]);
        }
        let expected = reference::finite::non_finite(&x);
        assert_eq!(device_check(&x), expected, "n={n}");
        let (_, first) = expected.unwrap();
        let err =
            check_finite(&Tensor::from_slice(&device(), &[n], &x).unwrap(), "weights").unwrap_err();
        match &err {
            Error::NonFinite { what, index } => {
                assert_eq!((what.as_str(), *index), ("weights", first), "{err}");
            }
            other => panic!("expected NonFinite, got {other}"),
        }
    }
    // Every value non-finite: the count is n, the first index 0.
    let n = 10_007;
    let x = vec![f32::NAN; n];
    assert_eq!(device_check(&x), Some((n as u64, 0)));
}

/// Two checks share one flag buffer in one command buffer, each in its own slot, and
/// `clear_buffer` resets the flags between steps.
#[test]
fn shared_flag_buffer_slots_and_reset() {
    let dev = device();
    let n = 1000;
    let a = Tensor::from_slice(&dev, &[n], &random(1, n, 1.0)).unwrap();
    let b = Tensor::from_slice(&dev, &[n], &random(2, n, 1.0)).unwrap();
    let flags = flag_buffer(&dev, 3);
    let da = finite_check_dispatch(&dev, a.buffer(), &flags, n, 0).unwrap();
    let db = finite_check_dispatch(&dev, b.buffer(), &flags, n, 2).unwrap();
    let step = |bad_a: Option<usize>, bad_b: Option<usize>| {
        let mut va = random(1, n, 1.0);
        let mut vb = random(2, n, 1.0);
        if let Some(i) = bad_a {
            va[i] = f32::INFINITY;
        }
        if let Some(i) = bad_b {
            vb[i] = f32::NAN;
        }
        a.write(&va).unwrap();
        b.write(&vb).unwrap();
        let mut encoder = dev
            .wgpu_device()
            .create_command_encoder(&Default::default());
        encoder.clear_buffer(&flags, 0, None);
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            da.record(&mut pass);
            db.record(&mut pass);
        }
        dev.queue().submit([encoder.finish()]);
        let words = read_words(&dev, &flags, 3 * FLAG_WORDS).unwrap();
        (
            decode_flags(&words, 0),
            decode_flags(&words, 1),
            decode_flags(&words, 2),
        )
    };
    assert_eq!(step(Some(17), None), (Some((1, 17)), None, None));
    assert_eq!(step(None, Some(999)), (None, None, Some((1, 999))));
    assert_eq!(step(None, None), (None, None, None));
    assert_eq!(step(Some(0), Some(5)), (Some((1, 0)), None, Some((1, 5))));
    // Without a clear, counts accumulate: the documented reason to clear every step.
    dev.queue().submit([{
        let mut encoder = dev
            .wgpu_device()
            .create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            da.record(&mut pass);
        }
        encoder.finish()
    }]);
    let words = read_words(&dev, &flags, 3 * FLAG_WORDS).unwrap();
    assert_eq!(decode_flags(&words, 0), Some((2, 0)));
}

#[test]
fn bad_arguments() {
    let dev = device();
    let t = Tensor::zeros(&dev, &[4]).unwrap();
    let flags = flag_buffer(&dev, 2);
    assert!(matches!(
        finite_check_dispatch(&dev, t.buffer(), &flags, 4, 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        finite_check_dispatch(&dev, t.buffer(), &flags, 0, 0),
        Err(Error::Empty { .. })
    ));
    assert_eq!(decode_flags(&[0, 0], 0), None);
    assert_eq!(decode_flags(&[3, u32::MAX - 9], 0), Some((3, 9)));
    assert_eq!(decode_flags(&[3, 0], 1), None);
}

/// A check over tensors laid out one after another (a packed gradient arena) records each
/// finding in its own tensor's slot at its index in that tensor, exactly as separate checks
/// would; tensors that are all finite leave their slots empty.
#[test]
fn a_packed_check_records_each_tensor_in_its_own_slot() {
    let dev = device();
    // Tensor lengths: one element, primes, and one past a workgroup's stride; each tensor k
    // goes to status slot 2 + 2k (the header takes slots 0 and 1, odd slots stay unused).
    let lens = [1usize, 7, 64, 1, 131, 17];
    let starts: Vec<usize> = lens
        .iter()
        .scan(0, |at, &n| {
            let s = *at;
            *at += n;
            Some(s)
        })
        .collect();
    let n: usize = lens.iter().sum();
    let parts: Vec<(usize, usize)> = starts
        .iter()
        .enumerate()
        .map(|(k, &s)| (s, 2 + 2 * k))
        .collect();
    let mut x = random(5, n, 10.0);
    // (tensor, indices made non-finite): tensors 0, 2, 4 hold findings, 1, 3, 5 do not.
    let bad: [(usize, &[usize]); 3] = [(0, &[0]), (2, &[63, 5, 40]), (4, &[130, 0])];
    for (k, indices) in bad {
        for (j, &i) in indices.iter().enumerate() {
            x[starts[k] + i] = f32::from_bits(BAD[j % BAD.len()]);
        }
    }
    let t = Tensor::from_slice(&dev, &[n], &x).unwrap();
    let slots = 2 + 2 * lens.len();
    let status = flag_buffer(&dev, slots);
    let d = finite_check_parts_dispatch(&dev, t.buffer(), &status, &parts, n).unwrap();
    eigengrad::kernels::run(&dev, &[&d]).unwrap();
    let words = read_words(&dev, &status, slots * FLAG_WORDS).unwrap();
    for (k, &len) in lens.iter().enumerate() {
        let expected = bad
            .iter()
            .find(|(b, _)| *b == k)
            .map(|(_, indices)| (indices.len() as u64, *indices.iter().min().unwrap() as u64));
        let mine = &x[starts[k]..starts[k] + len];
        assert_eq!(expected, reference::finite::non_finite(mine), "tensor {k}");
        assert_eq!(decode_flags(&words, parts[k].1), expected, "tensor {k}");
        assert_eq!(
            decode_flags(&words, parts[k].1 + 1),
            None,
            "beside tensor {k}"
        );
    }
}

#[test]
fn packed_check_rejects_parts_that_do_not_split_the_values() {
    let dev = device();
    let t = Tensor::zeros(&dev, &[10]).unwrap();
    let status = flag_buffer(&dev, 6);
    let bad: [&[(usize, usize)]; 6] = [
        &[],
        &[(1, 2)],
        &[(0, 2), (4, 3), (4, 4)],
        &[(0, 2), (10, 3)],
        &[(0, 1)],
        &[(0, 2), (5, 6)],
    ];
    for parts in bad {
        match finite_check_parts_dispatch(&dev, t.buffer(), &status, parts, 10) {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!("{parts:?}: expected InvalidArgument, got {other:?}"),
        }
    }
}
