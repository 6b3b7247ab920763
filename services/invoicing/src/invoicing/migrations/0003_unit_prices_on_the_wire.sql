-- Pre-rated usage stored amount ÷ quantity unrounded (0.333… with 28 digits), which no Line
-- can carry: the read API and the close refused such lines. The unit price shown is
-- informational: rounded half-even to 12 places, none from 10^15 up. (round() on numeric
-- rounds half away from zero, so a tie is rounded to even by hand; the outer round() only
-- sets the scale to 12.)
update invoice_lines
set unit_price = case
    when abs(unit_price) >= 1e15 then null
    when abs(unit_price * 1e12 - trunc(unit_price * 1e12)) = 0.5 then round(
        (trunc(unit_price * 1e12) + case when mod(trunc(unit_price * 1e12), 2) = 0 then 0 else sign(unit_price) end)
        / 1e12,
        12
    )
    else round(unit_price, 12)
end
where kind = 'usage' and unit_price is not null and (scale(unit_price) > 12 or abs(unit_price) >= 1e15);
