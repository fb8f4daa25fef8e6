/**
 * Test documents made with real writer libraries (pdf-lib, docx, pngjs, an RC4/AES PDF encrypter): multi-page,
 * two-column, encrypted and image-only PDFs, and DOCX files with headings. No hand-written file bytes.
 */
import { encryptPDF } from '@pdfsmaller/pdf-encrypt-lite';
import { Document, HeadingLevel, Packer, Paragraph } from 'docx';
import { PDFDocument, StandardFonts, type PDFFont, type PDFPage } from 'pdf-lib';
import { PNG } from 'pngjs';

const PAGE: [number, number] = [612, 792];
const SIZE = 11;
const LEADING = 14;

async function newPdf(title?: string): Promise<{ pdf: PDFDocument; font: PDFFont }> {
  const pdf = await PDFDocument.create();
  if (title !== undefined) pdf.setTitle(title);
  return { pdf, font: await pdf.embedFont(StandardFonts.Helvetica) };
}

function drawLines(page: PDFPage, font: PDFFont, lines: string[], x: number, top: number): void {
  lines.forEach((line, i) => page.drawText(line, { x, y: top - i * LEADING, size: SIZE, font }));
}

/** One column per page; each page is a list of lines, drawn top to bottom. */
export async function singleColumnPdf(pages: string[][], title?: string): Promise<Uint8Array> {
  const { pdf, font } = await newPdf(title);
  for (const lines of pages) drawLines(pdf.addPage(PAGE), font, lines, 72, 720);
  return pdf.save();
}

/**
 * A page with a full-width heading over two columns, whose lines are drawn alternately left, right, left, … so the
 * content stream's order is not the reading order.
 */
export async function twoColumnPdf(heading: string, left: string[], right: string[], footer?: string): Promise<Uint8Array> {
  const { pdf, font } = await newPdf();
  const page = pdf.addPage(PAGE);
  page.drawText(heading, { x: 72, y: 740, size: 16, font });
  const rows = Math.max(left.length, right.length);
  for (let i = 0; i < rows; i++) {
    const y = 700 - i * LEADING;
    if (right[i] !== undefined) page.drawText(right[i]!, { x: 320, y, size: SIZE, font });
    if (left[i] !== undefined) page.drawText(left[i]!, { x: 72, y, size: SIZE, font });
  }
  if (footer !== undefined) page.drawText(footer, { x: 72, y: 700 - (rows + 2) * LEADING, size: SIZE, font });
  return pdf.save();
}

/** A password-protected PDF (user password required to open). */
export async function encryptedPdf(): Promise<Uint8Array> {
  const plain = await singleColumnPdf([['Secret quarterly numbers.']]);
  return encryptPDF(plain, 'user-password', 'owner-password');
}

/** A scan: every page is a picture, there is no text layer. */
export async function imageOnlyPdf(pages = 2): Promise<Uint8Array> {
  const png = new PNG({ width: 64, height: 32 });
  for (let i = 0; i < png.data.length; i += 4) {
    const v = (i / 4) % 7 === 0 ? 0 : 255;
    png.data[i] = v;
    png.data[i + 1] = v;
    png.data[i + 2] = v;
    png.data[i + 3] = 255;
  }
  const { pdf } = await newPdf();
  const image = await pdf.embedPng(PNG.sync.write(png));
  for (let i = 0; i < pages; i++) pdf.addPage(PAGE).drawImage(image, { x: 50, y: 400, width: 500, height: 250 });
  return pdf.save();
}

export interface DocxBlock {
  heading?: 1 | 2 | 3;
  text: string;
}

const HEADING_LEVELS = { 1: HeadingLevel.HEADING_1, 2: HeadingLevel.HEADING_2, 3: HeadingLevel.HEADING_3 } as const;

export async function docxFile(blocks: DocxBlock[]): Promise<Buffer> {
  const doc = new Document({
    sections: [
      {
        children: blocks.map((b) =>
          b.heading ? new Paragraph({ text: b.text, heading: HEADING_LEVELS[b.heading] }) : new Paragraph(b.text),
        ),
      },
    ],
  });
  return Packer.toBuffer(doc);
}

/** Generated filler: `n` distinct sentences, so chunks have real sentence boundaries. */
export function sentences(topic: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `The ${topic} note number ${i + 1} explains one more detail about ${topic}.`);
}
